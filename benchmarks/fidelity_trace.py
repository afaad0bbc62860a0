"""How closely optimize_image.py follows the original, iteration by iteration, on a real model.

For each of Table 1's rows (fc8 unit 130, seed 0, as scripts/table1.sh runs them) it runs the same start image
through three loops on the same float32 network: the numpy/scipy restatement of the original
(tests/optimize/original_restatement.py: float64 image, float32 network, 2015 numpy's casting), dvtoolbox's loop
with its default float64 image state, and with the explicit float32 state (``--image-dtype float32``, the only mode
before). It prints, per loop and row, the largest relative deviation of obj from the restatement over the first 12
iterations and the first iteration where it exceeds 1e-6 (relative to the trace's largest magnitude). Not a test: run
it by hand.

    python benchmarks/fidelity_trace.py [--model efficientnet_lite0] [--iters 40] [--threads 2]
"""

import argparse
import os
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dvtoolbox.models.capture import gradient_source  # noqa: E402
from dvtoolbox.models.registry import create_model  # noqa: E402
from dvtoolbox.optimize.loop import optimize  # noqa: E402
from dvtoolbox.optimize.params import FindParams  # noqa: E402
from dvtoolbox.optimize.start import initial_x  # noqa: E402
from tests.optimize.original_restatement import (correctly_rounded_norm, original_loop,  # noqa: E402
                                                 torch_forward_backward)

ROWS = {  # scripts/table1.sh
    1: dict(decay=0, blur_radius=0.5, blur_every=4, small_norm_percentile=50, lr_policy="progress",
            lr_params={"max_lr": 100.0, "desired_prog": 2.0}),
    2: dict(decay=0.3, small_norm_percentile=20, lr_policy="constant", lr_params={"lr": 100.0}),
    3: dict(decay=0.0001, blur_radius=1.0, blur_every=4, lr_policy="constant", lr_params={"lr": 100.0}),
    4: dict(blur_radius=0.5, blur_every=4, px_abs_benefit_percentile=90, lr_policy="progress",
            lr_params={"max_lr": 100000000, "desired_prog": 2.0}),
}


def deviation(trace, ref):
    """(relative deviation per iteration, first iteration above 1e-6 or None)."""
    trace, ref = np.asarray(trace, np.float64), np.asarray(ref, np.float64)
    rel = np.abs(trace - ref) / np.abs(ref).max()
    above = np.flatnonzero(rel > 1e-6)
    return rel, (int(above[0]) if above.size else None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--layer", default="fc8")
    ap.add_argument("--channel", type=int, default=130)
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = create_model(args.model).requires_grad_(False)
    mean = model.input_contract.mean_image()
    print(f"{args.model} {args.layer}:{args.channel}, seed 0, {args.iters} iterations, CPU, {args.threads} threads;"
          " deviation of obj from the restatement of the original (relative to max |obj|)")
    print(f"{'row':>3}  {'image state':12} {'max dev, it. 0-11':>18} {'first > 1e-6':>13} {'max dev, all':>13}")
    for row, settings in ROWS.items():
        p = FindParams(push_layer=args.layer, push_channel=args.channel, max_iter=args.iters, **settings)
        x0 = initial_x(p.start_at, p.rand_seed, mean)
        fb = torch_forward_backward(model, p.push_layer, gradient_source(model, p.push_layer), p.push_unit,
                                    p.push_dir)
        ref = original_loop(fb, p, x0, mean)
        shape3d = (1000, 1, 1)
        for name, dtype in (("float64", torch.float64), ("float32", torch.float32)):
            (res,) = optimize(model, [p], x0[None], mean, shape3d, state_dtype=dtype)
            rel, first = deviation(res.obj, ref["obj"])
            print(f"{row:>3}  {name:12} {rel[:12].max():18.1e} {str(first):>13} {rel.max():13.1e}")
        if p.lr_policy != "constant":  # the original's own spread: its float32 norm(grad) rounded otherwise
            other = original_loop(fb, p, x0, mean, grad_norm=correctly_rounded_norm)
            rel, first = deviation(other["obj"], ref["obj"])
            print(f"{row:>3}  {'(original*)':12} {rel[:12].max():18.1e} {str(first):>13} {rel.max():13.1e}")
            (res,) = optimize(model, [p], x0[None], mean, shape3d)
            rel, first = deviation(res.obj, other["obj"])
            print(f"{row:>3}  {'float64 vs *':12} {rel[:12].max():18.1e} {str(first):>13} {rel.max():13.1e}")
    print("original*: the restatement with norm(grad) summed exactly and rounded once (another BLAS's sdot would "
          "differ alike);\nfloat64 vs *: dvtoolbox's default against it")


if __name__ == "__main__":
    main()
