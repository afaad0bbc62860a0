#!/usr/bin/env python
"""Units per second of the batched DVT loop against the batch size, and the FLOP/s it achieves.

For each batch size B, B units of one layer are optimised together (Table-1 row 3 by default: constant lr 100,
decay 1e-4, blur 1.0 every 4) for ``--iters`` iterations after a short warm-up; the time per iteration gives

- units/s: how many 1000-iteration units a second of this batch size finishes (B / (1000 * s_per_iter)),
- the speed-up over B = 1 (one unit at a time, the original's way), measured in the same run,
- achieved FLOP/s: the forward + backward FLOPs of one iteration (counted by ``torch.utils.flop_counter``) over its
  time, against ``--peak-tflops`` (default: the device's dense float32 peak where known),
- the projected wall time of the whole layer (``--layer-units`` units) for 1000 iterations at each B.

Batch sizes run in interleaved rounds so machine noise hits all alike; medians are reported. Not a test.

    python benchmarks/bench_layer_units.py --device cuda --batch-sizes 1,8,32,128,256
    python benchmarks/bench_layer_units.py --device cpu --batch-sizes 1,2,4,8 --iters 5
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
from dvtoolbox.models.capture import LayerCapture, StopForward, gradient_source, layer_shapes  # noqa: E402
from dvtoolbox.models.registry import create_model  # noqa: E402
from dvtoolbox.device import configure_float32  # noqa: E402
from dvtoolbox.optimize.loop import optimize  # noqa: E402
from dvtoolbox.optimize.params import FindParams  # noqa: E402
from dvtoolbox.optimize.start import initial_x  # noqa: E402

ROWS = {
    "row1": dict(decay=0, blur_radius=0.5, blur_every=4, small_norm_percentile=50, lr_policy="progress",
                 lr_params={"max_lr": 100.0, "desired_prog": 2.0}),
    "row3": dict(decay=0.0001, blur_radius=1.0, blur_every=4, lr_policy="constant", lr_params={"lr": 100.0}),
}
# dense float32 (no tensor cores) and TF32 tensor-core peaks, TFLOP/s, from NVIDIA's data sheets (SXM parts)
PEAKS = {"H100": (67.0, 494.7), "H200": (67.0, 494.7), "A100": (19.5, 156.0)}


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--deploy-proto", default=None, help="time a Caffe prototxt instead (random weights)")
    parser.add_argument("--layer", default="fc8")
    parser.add_argument("--row", choices=sorted(ROWS), default="row3")
    parser.add_argument("--batch-sizes", default="1,8,32,128")
    parser.add_argument("--iters", type=int, default=20, help="timed iterations per batch size and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (CPU runs)")
    parser.add_argument("--tf32", action="store_true", help="let cuDNN/cuBLAS use TF32 tensor cores")
    parser.add_argument("--channels-last", action="store_true", help="run the model in channels_last memory format")
    parser.add_argument("--profile", type=int, default=0, metavar="B",
                        help="print torch.profiler's top CUDA kernels of 3 iterations at batch size B, then exit")
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
    x = torch.as_tensor(x0, device=device).requires_grad_(True)
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


def peak_for(device, args) -> float:
    if args.peak_tflops is not None or device.type != "cuda":
        return args.peak_tflops
    name = torch.cuda.get_device_name(device)
    for key, (fp32, tf32) in PEAKS.items():
        if key in name:
            return tf32 if args.tf32 else fp32
    return None


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    configure_float32(device, allow_tf32=args.tf32)
    if args.deploy_proto:
        from dvtoolbox.models.caffe import load_caffe_model
        model = load_caffe_model(args.deploy_proto, None).eval()
        args.model = os.path.basename(args.deploy_proto)
    else:
        model = create_model(args.model)
    model = model.to(device).requires_grad_(False)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if args.profile:
        return profile(model, args, device)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    runs, flops = {}, {}
    for b in sizes:
        params, x0, mean = units_params(model, args.layer, args.row, b, args.iters)
        shape = _layer_shape(model, args.layer, device)
        runs[b] = (lambda params=params, x0=x0, mean=mean, shape=shape: optimize(model, params, x0, mean, shape))
        flops[b] = iteration_flops(model, args.layer, x0, device)
        warm = [dataclasses.replace(q, max_iter=2) for q in params]
        timed(lambda: optimize(model, warm, x0, mean, shape), device)
    times, memory = {b: [] for b in sizes}, {}
    for _ in range(args.rounds):
        for b in sizes:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            times[b].append(timed(runs[b], device) / args.iters)
            if device.type == "cuda":
                memory[b] = torch.cuda.max_memory_allocated(device) / 2**30
    peak = peak_for(device, args)
    where = machine(device, args.threads)
    print(f"{args.model} {args.layer}, Table-1 {args.row}, {args.iters} iterations x {args.rounds} rounds, {where}, "
          f"{'TF32' if args.tf32 else 'float32'}")
    print(f"{'batch':>5} {'s/iter':>9} {'units/s':>8} {'vs B=1':>7} {'GFLOP/iter':>10} {'TFLOP/s':>8} "
          f"{'of peak':>8} {'layer (min)':>11} {'GPU GiB':>8}")
    base = statistics.median(times[sizes[0]]) / sizes[0]
    for b in sizes:
        t = statistics.median(times[b])
        rate = b / (1000 * t)
        tflops = flops[b] / t / 1e12
        share = f"{100 * tflops / peak:7.1f}%" if peak else "       -"
        print(f"{b:5d} {t:9.4f} {rate:8.3f} {base / (t / b):7.2f} {flops[b] / 1e9:10.1f} {tflops:8.2f} {share} "
              f"{args.layer_units / rate / 60:11.1f} {memory.get(b, float('nan')):8.1f}")
    return 0


def profile(model, args, device) -> int:
    """The kernels that take the time, for one batch size."""
    params, x0, mean = units_params(model, args.layer, args.row, args.profile, 3)
    shape = _layer_shape(model, args.layer, device)
    optimize(model, params, x0, mean, shape)
    activities = [torch.profiler.ProfilerActivity.CPU] + (
        [torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.profiler.profile(activities=activities) as prof:
        optimize(model, params, x0, mean, shape)
    sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=25, max_name_column_width=60))
    return 0


def _layer_shape(model, layer, device):
    shape = layer_shapes(model, tuple(model.input_contract.size), device)[layer]
    return tuple(shape) if len(shape) == 3 else (shape[0], 1, 1)


if __name__ == "__main__":
    sys.exit(main())
