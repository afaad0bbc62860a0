#!/usr/bin/env python
"""Units per second of the batched DVT loop against the batch size and the mode (engine x precision), and the
FLOP/s it achieves.

For each mode (``--engines`` x ``--precisions``: eager / folded / compiled / graphs, float32 / tf32 / bf16) and
batch size B, B units of one layer are optimised together (Table-1 row 3 by default: constant lr 100, decay 1e-4,
blur 1.0 every 4) after a warm-up call (which compiles, for the compiled engines: its seconds are printed). A
call's fixed costs (set-up, the first eager iterations before the CUDA graphs are captured, the final copies) are
taken out: the time per iteration is (time of 8 + ``--iters`` iterations - time of 8) / ``--iters``. It gives

- units/s: how many 1000-iteration units a second of this batch size finishes (B / (1000 * s_per_iter)),
- the speed-up over the first row (eager float32 at the first B, measured in the same run),
- achieved FLOP/s: the forward + backward FLOPs of one iteration of the model as built (counted by
  ``torch.utils.flop_counter``; the same count for every mode, so a mode that does less work, folded batch norms,
  shows as more FLOP/s) over its time, against ``--peak-tflops`` (default: the device's dense float32 peak where
  known; TF32's / bf16's tensor-core peak for those precisions),
- the projected wall time of the whole layer (``--layer-units`` units) for 1000 iterations at each B.

Modes and batch sizes run in interleaved rounds so machine noise hits all alike; medians (and on a CPU the minima)
are reported in the closing table; each warm-up and each round also prints one line as it ends, so a run cut short
keeps what it measured. Not a test.

    python benchmarks/bench_layer_units.py --device cuda --batch-sizes 128,512 --engines eager,compiled,graphs \\
        --precisions float32,tf32,bf16
    python benchmarks/bench_layer_units.py --device cpu --batch-sizes 1,4 --iters 5 --engines eager,folded
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from _timing import machine, timed  # noqa: E402  (benchmarks/, the script's folder)
from dvtoolbox.device import Execution, configure_precision, keep_freed_memory  # noqa: E402
from dvtoolbox.models.capture import LayerCapture, StopForward, gradient_source, layer_shapes  # noqa: E402
from dvtoolbox.models.registry import create_model  # noqa: E402
from dvtoolbox.optimize.loop import optimize  # noqa: E402
from dvtoolbox.optimize.params import FindParams  # noqa: E402
from dvtoolbox.optimize.start import initial_x  # noqa: E402

ROWS = {
    "row1": dict(decay=0, blur_radius=0.5, blur_every=4, small_norm_percentile=50, lr_policy="progress",
                 lr_params={"max_lr": 100.0, "desired_prog": 2.0}),
    "row3": dict(decay=0.0001, blur_radius=1.0, blur_every=4, lr_policy="constant", lr_params={"lr": 100.0}),
}
# dense float32 (no tensor cores), TF32 and bf16 tensor-core dense peaks, TFLOP/s, NVIDIA's data sheets (SXM parts)
WARM = 8  # iterations of a call that are not timed: the set-up, the eager iterations before CUDA graphs are captured
PEAKS = {"H100": (67.0, 494.7, 989.4), "H200": (67.0, 494.7, 989.4), "A100": (19.5, 156.0, 312.0)}


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--deploy-proto", default=None, help="time a Caffe prototxt instead (random weights)")
    parser.add_argument("--layer", default="fc8")
    parser.add_argument("--row", choices=sorted(ROWS), default="row3")
    parser.add_argument("--batch-sizes", default="1,8,32,128")
    parser.add_argument("--engines", default="eager", help="comma-separated: eager, folded, compiled, graphs")
    parser.add_argument("--precisions", default="float32", help="comma-separated: float32, tf32, bf16")
    parser.add_argument("--iters", type=int, default=20, help="timed iterations per batch size, mode and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (CPU runs)")
    parser.add_argument("--tf32", action="store_true", help="the same as --precisions tf32")
    parser.add_argument("--channels-last", action="store_true", help="run the model in channels_last memory format")
    parser.add_argument("--profile", type=int, default=0, metavar="B",
                        help="print torch.profiler's top kernels of 3 iterations at batch size B (the first mode), "
                             "then exit")
    parser.add_argument("--layer-units", type=int, default=1000, help="units of the layer, for the projection")
    parser.add_argument("--peak-tflops", type=float, default=None, help="peak to compare with (default: by name)")
    return parser


def units_params(model, layer: str, row: str, count: int, iters: int):
    """``count`` units of ``layer`` with their own seeds, x0 (N, 3, H, W) and the layer's (C, H, W)."""
    mean = model.input_contract.mean_image()
    params = [FindParams(push_layer=layer, push_channel=u, rand_seed=u, max_iter=iters, **ROWS[row])
              for u in range(count)]
    x0 = np.stack([initial_x(q.start_at, q.rand_seed, mean) for q in params])
    return params, x0, mean


def iteration_flops(model, layer: str, x0: np.ndarray, device) -> int:
    """FLOPs of one forward to ``layer`` and one backward to the input, as torch counts them (the loop's own
    ``autograd.grad`` cannot run under the counter's module hooks, so this repeats its work with ``backward``)."""
    x = torch.as_tensor(x0, device=device).float().requires_grad_(True)
    source = gradient_source(model, layer)
    with FlopCounterMode(display=False) as counter:
        with LayerCapture(model, {layer, source}, stop_when_complete=True) as cap:
            try:
                model(x)
            except StopForward:
                pass
        out = cap.outputs[source]
        out.flatten(1)[:, 0].sum().backward()
    return counter.get_total_flops()


def peak_for(device, precision: str, args) -> float:
    if args.peak_tflops is not None or device.type != "cuda":
        return args.peak_tflops
    name = torch.cuda.get_device_name(device)
    for key, peaks in PEAKS.items():
        if key in name:
            return peaks[("float32", "tf32", "bf16").index(precision)]
    return None


def build_model(args, device):
    if args.deploy_proto:
        from dvtoolbox.models.caffe import load_caffe_model
        model = load_caffe_model(args.deploy_proto, None).eval()
        args.model = os.path.basename(args.deploy_proto)
    else:
        model = create_model(args.model)
    model = model.to(device).requires_grad_(False)
    return model.to(memory_format=torch.channels_last) if args.channels_last else model


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    precisions = ["tf32"] if args.tf32 else args.precisions.split(",")
    modes = [Execution(e, p).on(device) for p in precisions for e in args.engines.split(",")]
    model = build_model(args, device)
    if args.profile:
        return profile(model, args, device, modes[0])
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    shape = _layer_shape(model, args.layer, device)
    runs, flops, compile_s = {}, {}, {}
    for b in sizes:
        params, x0, mean = units_params(model, args.layer, args.row, b, WARM + args.iters)
        flops[b] = iteration_flops(model, args.layer, x0, device)
        short = [dataclasses.replace(q, max_iter=WARM) for q in params]
        for mode in modes:
            configure_precision(device, mode)
            key = (mode.engine, mode.precision, b)
            runs[key] = tuple((lambda group=group, x0=x0, mean=mean, mode=mode:
                               optimize(model, group, x0, mean, shape, execution=mode)) for group in (params, short))
            compile_s[key] = timed(runs[key][1], device)  # the first call compiles
            print(f"warm-up {mode.engine} {mode.precision} B={b}: {compile_s[key]:.1f} s", flush=True)
    times, memory = {key: [] for key in runs}, {}
    for r in range(args.rounds):
        for key in (list(runs) if r % 2 == 0 else reversed(list(runs))):
            configure_precision(device, Execution(key[0], key[1]))
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            long_s, short_s = timed(runs[key][0], device), timed(runs[key][1], device)
            times[key].append((long_s - short_s) / args.iters)  # without a call's fixed costs and warm-up
            print(f"round {r + 1}: {key[0]} {key[1]} B={key[2]} {times[key][-1]:.4f} s/iteration", flush=True)
            if device.type == "cuda":
                memory[key] = torch.cuda.max_memory_allocated(device) / 2**30
    where = machine(device, args.threads)
    print(f"{args.model} {args.layer}, Table-1 {args.row}, {args.iters} iterations x {args.rounds} rounds, {where}; "
          f"load average (1 min) {os.getloadavg()[0]:.2f}")
    print(f"{'engine':>8} {'precision':>9} {'batch':>5} {'s/iter':>9} {'min':>9} {'units/s':>8} {'vs first':>8} "
          f"{'GFLOP/it':>9} {'TFLOP/s':>8} {'of peak':>8} {'layer min':>9} {'warm-up s':>9} {'GPU GiB':>8}")
    first = None
    for key in runs:
        engine, precision, b = key
        t, low = statistics.median(times[key]), min(times[key])
        rate = b / (1000 * t)
        first = first if first is not None else rate
        tflops = flops[b] / t / 1e12
        peak = peak_for(device, precision, args)
        share = f"{100 * tflops / peak:7.1f}%" if peak else "       -"
        gib = f"{memory[key]:8.1f}" if key in memory else "       -"  # CUDA's allocator only
        print(f"{engine:>8} {precision:>9} {b:5d} {t:9.4f} {low:9.4f} {rate:8.3f} {rate / first:8.2f} "
              f"{flops[b] / 1e9:9.1f} {tflops:8.2f} {share} {args.layer_units / rate / 60:9.1f} "
              f"{compile_s[key]:9.1f} {gib}")
    return 0


def profile(model, args, device, mode) -> int:
    """The kernels that take the time, for one batch size and mode."""
    params, x0, mean = units_params(model, args.layer, args.row, args.profile, 3)
    shape = _layer_shape(model, args.layer, device)
    configure_precision(device, mode)
    optimize(model, params, x0, mean, shape, execution=mode)
    activities = [torch.profiler.ProfilerActivity.CPU] + (
        [torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.profiler.profile(activities=activities) as prof:
        optimize(model, params, x0, mean, shape, execution=mode)
    sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=25, max_name_column_width=60))
    return 0


def _layer_shape(model, layer, device):
    shape = layer_shapes(model, tuple(model.input_contract.size), device)[layer]
    return tuple(shape) if len(shape) == 3 else (shape[0], 1, 1)


if __name__ == "__main__":
    sys.exit(main())
