"""The full DVT loop against a bare forward + backward + ascent loop on the same network, in one process.

Prints seconds per iteration, the ratio loop / bare and the page faults per iteration for Table-1 row 1 (progress
policy, blur every 4, small-norm 50th-percentile clip) and row 3 (constant lr, decay, blur every 4), each with the
original's float64 image state (the default) and with the float32 state of ``--image-dtype float32`` (``-f32``):
their ratio is what float64 costs per iteration. With ``--engines eager,folded`` each engine's loop is timed
against a bare loop on that engine's network (``bare-folded``: batch norms folded, channels_last on a CPU), so
each ratio is the loop's own overhead. Rounds are interleaved so that machine noise hits every variant alike; the
medians over rounds are reported. The process keeps freed memory for reuse as the command lines do
(``dvtoolbox.device.keep_freed_memory``; ``--system-malloc``: glibc's defaults). Not a test: run it by hand.

    python benchmarks/bench_optimize_loop.py [--device cpu|cuda] [--iters 40] [--rounds 15] [--threads 2]
        [--engines eager,folded] [--system-malloc]
"""

import argparse
import os
import resource
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _timing import interleaved_times, machine, medians_and_minima, timed  # noqa: E402  (benchmarks/, the script's folder)
from dvtoolbox.device import Execution, configure_float32, keep_freed_memory  # noqa: E402
from dvtoolbox.models.program import prepare_network  # noqa: E402
from dvtoolbox.models.registry import create_model  # noqa: E402
from dvtoolbox.optimize.loop import optimize  # noqa: E402
from dvtoolbox.optimize.params import FindParams  # noqa: E402
from dvtoolbox.optimize.start import initial_x  # noqa: E402

ROWS = {
    "row1": dict(decay=0, blur_radius=0.5, blur_every=4, small_norm_percentile=50, lr_policy="progress",
                 lr_params={"max_lr": 100.0, "desired_prog": 2.0}),
    "row3": dict(decay=0.0001, blur_radius=1.0, blur_every=4, lr_policy="constant", lr_params={"lr": 100.0}),
}


def bare_loop(network, x0, unit, iters, device, memory_format=torch.contiguous_format):
    """Forward, backward from one logit, x += lr * grad: the least any pixel-space ascent must do."""
    x = torch.as_tensor(x0, dtype=torch.float32, device=device).clone()
    for _ in range(iters):
        x.requires_grad_(True)
        (grad,) = torch.autograd.grad(network(x.contiguous(memory_format=memory_format))[0, unit], x)
        x = (x + 100.0 * grad).detach()
    return x


def page_faults(fn) -> int:
    """Minor page faults (fresh pages the system hands this process) during ``fn()``."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    fn()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--iters", type=int, default=40, help="iterations per optimize() call: each call's fixed costs "
                    "(the layout survey's probe pass, set-up, the results) weigh on short calls")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--engines", default="eager", help="comma-separated: eager, folded, compiled, graphs")
    ap.add_argument("--system-malloc", action="store_true", help="do not call keep_freed_memory (glibc defaults)")
    args = ap.parse_args(argv)
    kept = False if args.system_malloc else keep_freed_memory()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    configure_float32(device)
    model = create_model("efficientnet_lite0").to(device).requires_grad_(False)
    mean = model.input_contract.mean_image()
    x0 = initial_x("mean_plus_rand", 0, mean)[None]
    variants = {}
    for engine in args.engines.split(","):
        execution = Execution(engine).on(device)
        suffix = "" if engine == "eager" else "-" + engine
        if engine == "eager":
            variants["bare"] = lambda: bare_loop(model, x0, 130, args.iters, device)
        else:
            fmt = execution.memory_format(device)
            network = prepare_network(model, {"fc8"}, torch.zeros((1, 3, 224, 224), device=device), execution.fold,
                                      fmt)
            variants["bare" + suffix] = lambda n=network, f=fmt: bare_loop(n, x0, 130, args.iters, device, f)
        for name, row in ROWS.items():
            if engine != "eager" and name != "row3":
                continue
            p = FindParams(push_layer="fc8", push_channel=130, max_iter=args.iters, **row)
            variants[name + suffix] = lambda p=p, e=execution: optimize(model, [p], x0, mean, (1000, 1, 1),
                                                                         execution=e)
            if engine == "eager":
                variants[name + "-f32"] = lambda p=p: optimize(model, [p], x0, mean, (1000, 1, 1),
                                                               state_dtype=torch.float32)
    for fn in variants.values():  # warm-up, and any compilation, before the timing
        timed(fn, device)
    faults = {name: page_faults(fn) / args.iters for name, fn in variants.items()}
    stats = medians_and_minima(interleaved_times(variants, args.rounds, device, per=args.iters))
    print(f"EfficientNet-Lite0 224x224, {args.iters} iterations x {args.rounds} interleaved rounds, "
          f"{machine(device, args.threads)}, freed memory kept: {kept}; load average (1 min): {os.getloadavg()[0]:.2f}")
    print(f"{'variant':13} {'median s/it':>11} {'ratio':>7} {'min s/it':>9} {'ratio':>7} {'faults/it':>10}")
    for name, (med, low) in stats.items():
        bare = stats[next(b for b in (f"bare-{name.split('-')[-1]}", "bare") if b in stats)]
        print(f"{name:13} {med:11.4f} {med / bare[0]:7.3f} {low:9.4f} {low / bare[1]:7.3f} {faults[name]:10.1f}")
    for name in ROWS:
        print(f"float64 state costs {name}: {stats[name][0] / stats[name + '-f32'][0]:.3f}x the float32 state "
              f"(minima: {stats[name][1] / stats[name + '-f32'][1]:.3f}x)")
    for engine in args.engines.split(",")[1:]:
        print(f"engine {engine}: the loop {stats['row3'][0] / stats['row3-' + engine][0]:.3f}x as fast as eager "
              f"(minima {stats['row3'][1] / stats['row3-' + engine][1]:.3f}x), the bare loop "
              f"{stats['bare'][0] / stats['bare-' + engine][0]:.3f}x ({stats['bare'][1] / stats['bare-' + engine][1]:.3f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
