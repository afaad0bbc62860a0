#!/usr/bin/env python
"""Time the original's per-iteration work on a Caffe model loaded without Caffe, against real Caffe's time.

One iteration is what DVT's optimizer does each step on caffenet-yos (227x227): forward to the pushed layer
(``net.forward(end="fc8")``), backward from one unit of it to the data, and a Gaussian blur of the 3x227x227
image. The weights are random. Reports the median of ``--iters`` iterations after ``--warmup`` ones, for each
thread count, and the speed-up over real Caffe.

Real Caffe's time comes from the same run when ``--caffe-python`` names a Python that imports pycaffe (see
``benchmarks/setup_real_caffe.sh``): each round times this loader, then real Caffe (``caffe_timing.py`` in a
subprocess, OpenBLAS with the same thread count) on the same prototxt, and the ratio is of the medians over the
rounds, so that a busy machine slows both alike. Without it, the issue's figures for real Caffe on a 2-core machine
like this one are used (0.095 s/iteration with 2 BLAS threads, 0.178 s with 1).

    python benchmarks/bench_caffe_loader.py                  # 2 threads, then 1; Caffe's published figures
    python benchmarks/bench_caffe_loader.py --caffe-python "chroot /opt/caffe-bullseye python3"
    python benchmarks/bench_caffe_loader.py --device cuda    # the same module on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from dvtoolbox.models.caffe import load_caffe_model  # noqa: E402
from dvtoolbox.models.capture import LayerCapture, gradient_source  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROTO = os.path.join(HERE, "..", "tests", "data", "caffe_models", "caffenet-yos-deploy.prototxt")
CAFFE_SECONDS = {2: 0.095, 1: 0.178}  # real Caffe, s/iteration, by BLAS thread count (2-core machine)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--deploy-proto", default=DEFAULT_PROTO, help="deploy prototxt to build (random weights)")
    parser.add_argument("--push-layer", default="fc8", help="blob pushed: forward ends there, backward starts there")
    parser.add_argument("--push-channel", type=int, default=130, help="unit pushed")
    parser.add_argument("--blur-radius", type=float, default=1.0, help="Gaussian blur sigma in pixels (paper: 1.0)")
    parser.add_argument("--threads", default="2,1", help="comma-separated torch thread counts to time")
    parser.add_argument("--iters", type=int, default=20, help="timed iterations per thread count")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations first")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--caffe-python", default=None,
                        help="command that runs a Python with pycaffe, to time real Caffe in this run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (loader, Caffe) with --caffe-python")
    return parser


def blur_function(device: str):
    """dvtoolbox's gaussian_blur when it is there, else scipy.ndimage.gaussian_filter per channel (CPU only)."""
    try:
        from dvtoolbox.regularizers.operations import gaussian_blur
        return "dvtoolbox.regularizers.operations.gaussian_blur", gaussian_blur
    except ImportError:
        from scipy.ndimage import gaussian_filter

        def blur(x, sigma):
            arr = x.detach().cpu().numpy()
            out = np.stack([[gaussian_filter(c, sigma) for c in img] for img in arr])
            return torch.from_numpy(out).to(x.device)
        return "scipy.ndimage.gaussian_filter per channel", blur


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def one_iteration(model, x, layer, source, unit, blur, sigma, device):
    """(forward s, backward s, blur s, new x) of one iteration."""
    t0 = time.perf_counter()
    x = x.detach().requires_grad_(True)
    with LayerCapture(model, {layer, source}) as cap:
        model(x, end=layer)
    pushed = cap.outputs[source].reshape(x.shape[0], -1)[0, unit]
    sync(device)
    t1 = time.perf_counter()
    (grad,) = torch.autograd.grad(pushed, x)
    sync(device)
    t2 = time.perf_counter()
    x = blur(x.detach() + grad, sigma)
    sync(device)
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2, x


def time_loader(model, x0, args, source, blur):
    """Median (total, forward, backward, blur) seconds per iteration of this loader, after the warm-up."""
    x, rows = x0, []
    for i in range(args.warmup + args.iters):
        fwd, bwd, blr, x = one_iteration(model, x, args.push_layer, source, args.push_channel, blur,
                                         args.blur_radius, args.device)
        if i >= args.warmup:
            rows.append((fwd + bwd + blr, fwd, bwd, blr))
    return tuple(statistics.median(col) for col in zip(*rows))


def time_real_caffe(args, threads: int) -> float:
    """Median seconds per iteration of real Caffe doing the same work (caffe_timing.py under --caffe-python)."""
    with open(args.deploy_proto) as f:
        job = {"prototxt": f.read(), "push_layer": args.push_layer, "push_channel": args.push_channel,
               "blur_radius": args.blur_radius, "iters": args.iters, "warmup": args.warmup, "seed": 0}
    with open(os.path.join(HERE, "caffe_timing.py")) as f:
        script = f.read()
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    done = subprocess.run(shlex.split(args.caffe_python) + ["-c", script], input=json.dumps(job), env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise SystemExit(f"real Caffe failed ({args.caffe_python}, exit status {done.returncode}): {last}")
    return statistics.median(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])


def main(argv=None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.iters < 1 or args.warmup < 0:
        parser.error(f"--rounds and --iters must be >= 1 and --warmup >= 0, got {args.rounds}, {args.iters}, "
                     f"{args.warmup}")
    t0 = time.perf_counter()
    model = load_caffe_model(args.deploy_proto, None).to(args.device)
    build_s = time.perf_counter() - t0
    size = model.input_contract.size
    source = gradient_source(model, args.push_layer)
    blur_name, blur = blur_function(args.device)
    print(f"model: {os.path.basename(args.deploy_proto)} {size[0]}x{size[1]}, built in {build_s:.2f} s (random "
          f"weights); push {args.push_layer} unit {args.push_channel} (gradient from {source}); device {args.device}")
    print(f"blur: {blur_name}, sigma {args.blur_radius}; torch {torch.__version__}; median of {args.iters} "
          f"iterations after {args.warmup} warm-up")
    # real Caffe's times are for this work only: CaffeNet 227x227 pushed at fc8, on the CPU
    compared = os.path.basename(args.deploy_proto) == os.path.basename(DEFAULT_PROTO) and args.push_layer == "fc8"
    gen = torch.Generator().manual_seed(0)
    x0 = (torch.rand((1, 3) + tuple(size), generator=gen) * 255.0 - 117.0).to(args.device)
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        ours, caffe = [], []
        for _ in range(args.rounds if args.caffe_python else 1):
            ours.append(time_loader(model, x0, args, source, blur))
            if args.caffe_python:
                caffe.append(time_real_caffe(args, threads))
        total, fwd, bwd, blr = (statistics.median(col) for col in zip(*ours))
        line = (f"threads {threads}: {total * 1000:.1f} ms/iteration (forward {fwd * 1000:.1f}, backward "
                f"{bwd * 1000:.1f}, blur {blr * 1000:.1f})")
        if caffe:
            ref = statistics.median(caffe)
            rounds = ", ".join(f"{o[0] * 1000:.1f}/{c * 1000:.1f}" for o, c in zip(ours, caffe))
            line += (f"; real Caffe in this run {ref * 1000:.1f} ms -> {ref / total:.2f}x faster "
                     f"(rounds, loader/Caffe ms: {rounds})")
        elif threads in CAFFE_SECONDS and args.device == "cpu" and compared:
            ref = CAFFE_SECONDS[threads]
            line += f"; real Caffe (issue's figure) {ref * 1000:.0f} ms -> {ref / total:.2f}x faster"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
