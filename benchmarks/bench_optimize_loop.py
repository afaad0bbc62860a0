"""The full DVT loop against a bare forward + backward + ascent loop on the same model, in one process.

Prints seconds per iteration and the ratio full / bare for Table-1 row 1 (progress policy, blur every 4,
small-norm 50th-percentile clip) and row 3 (constant lr, decay, blur every 4), each with the original's float64
image state (the default) and with the float32 state of ``--image-dtype float32`` (``-f32``): their ratio is what
float64 costs per iteration. Rounds are interleaved so that machine noise hits every variant alike; the medians over
rounds are reported. Not a test: run it by hand.

    python benchmarks/bench_optimize_loop.py [--device cpu|cuda] [--iters 40] [--rounds 5] [--threads 2]
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _timing import interleaved_medians, machine  # noqa: E402  (benchmarks/, the script's folder)
from dvtoolbox.models.registry import create_model
from dvtoolbox.optimize.loop import optimize
from dvtoolbox.optimize.params import FindParams
from dvtoolbox.optimize.start import initial_x

ROWS = {
    "row1": dict(decay=0, blur_radius=0.5, blur_every=4, small_norm_percentile=50, lr_policy="progress",
                 lr_params={"max_lr": 100.0, "desired_prog": 2.0}),
    "row3": dict(decay=0.0001, blur_radius=1.0, blur_every=4, lr_policy="constant", lr_params={"lr": 100.0}),
}


def bare_loop(model, x0, unit, iters, device):
    """Forward, backward from one logit, x += lr * grad: the least any pixel-space ascent must do."""
    x = torch.as_tensor(x0, dtype=torch.float32, device=device).clone()
    for _ in range(iters):
        x.requires_grad_(True)
        (grad,) = torch.autograd.grad(model(x)[0, unit], x)
        x = (x + 100.0 * grad).detach()
    return x


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = create_model("efficientnet_lite0").to(device).requires_grad_(False)
    mean = model.input_contract.mean_image()
    x0 = initial_x("mean_plus_rand", 0, mean)[None]
    variants = {"bare": lambda: bare_loop(model, x0, 130, args.iters, device)}
    for name, row in ROWS.items():
        p = FindParams(push_layer="fc8", push_channel=130, max_iter=args.iters, **row)
        variants[name] = lambda p=p: optimize(model, [p], x0, mean, (1000, 1, 1))
        variants[name + "-f32"] = lambda p=p: optimize(model, [p], x0, mean, (1000, 1, 1), state_dtype=torch.float32)
    medians = interleaved_medians(variants, args.rounds, device, per=args.iters)
    print(f"EfficientNet-Lite0 224x224, {args.iters} iterations x {args.rounds} rounds, {machine(device, args.threads)}")
    print(f"{'variant':9} {'s/iter':>9} {'ratio':>7}")
    for name, med in medians.items():
        print(f"{name:9} {med:9.4f} {med / medians['bare']:7.3f}")
    for name in ROWS:
        print(f"float64 state costs {name}: {medians[name] / medians[name + '-f32']:.3f}x the float32 state")


if __name__ == "__main__":
    main()
