#!/usr/bin/env python
"""How far each execution mode (engine x precision) takes the DVT loop from true float32, eager.

Two measurements, EfficientNet-Lite0, Table-1 row 3 (decay 1e-4, blur 1.0 every 4, lr 100; the README's first
command), float64 image state:

1. per iteration: fc8 unit 130 from seed 0 for ``--iters`` iterations in each mode; the obj trace against the
   eager true-float32 trace: the relative difference |obj - obj_ref| / max |obj_ref| at iteration 0, its maximum
   over iterations 0-9 and 0-(iters-1), and the first iteration where it exceeds 1e-6 and 1e-3 (the loop is
   chaotic at lr 100, so any difference grows until the trajectories are different images of the same unit);
2. full runs (``--full-iters``, default 0: skipped): the units ``--units`` (one batch) for that many iterations in
   each mode; per mode the mean best_obj, the majority successes, and the quality of the best images: the top-1
   accuracy and mean probability of the pushed class as judged by the model itself and by EfficientNet-Lite1 /
   Lite2 (the transfer judges of ``benchmarks/transfer_eval.py``; skipped when their weights packages are
   missing).

Not a test: run it by hand (a GPU measures the GPU's modes; on a CPU tf32 is true float32).

    python benchmarks/precision_modes.py [--device cuda] [--modes eager:float32,folded:float32,compiled:float32,
        graphs:float32,eager:tf32,eager:bf16,graphs:bf16] [--iters 40] [--full-iters 1000 --units 1,9,107,130,145]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from dvtoolbox.device import Execution, configure_precision, keep_freed_memory  # noqa: E402
from dvtoolbox.models.registry import create_model  # noqa: E402
from dvtoolbox.optimize.loop import optimize  # noqa: E402
from dvtoolbox.optimize.params import FindParams  # noqa: E402
from dvtoolbox.optimize.start import initial_x  # noqa: E402

ROW3 = dict(decay=0.0001, blur_radius=1.0, blur_every=4, lr_policy="constant", lr_params={"lr": 100.0})
JUDGES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def run(model, units, iters, mode, device):
    """(FindResults of ``units``, one batch, each from seed 0's x0 as the README's command; seconds) in ``mode``."""
    mean = model.input_contract.mean_image()
    params = [FindParams(push_layer="fc8", push_channel=u, max_iter=iters, **ROW3) for u in units]
    x0 = np.stack([initial_x(q.start_at, q.rand_seed, mean) for q in params])
    configure_precision(device, mode)
    start = time.perf_counter()
    results = optimize(model, params, x0, mean, (1000, 1, 1), execution=mode)
    return results, time.perf_counter() - start


def first_above(rel: np.ndarray, limit: float):
    above = np.flatnonzero(rel > limit)
    return int(above[0]) if above.size else None


def judge(images: np.ndarray, units, device) -> dict:
    """{judge: (top-1 hits, mean probability of the pushed class)} for best images (N, 3, 224, 224) in Lite0's
    pixel space (RGB 0..255 minus 127), resized to each judge's input size."""
    import torch.nn.functional as F

    scores = {}
    for name in JUDGES:
        try:
            model = create_model(name).to(device).requires_grad_(False)
        except Exception as exc:  # a missing optional weights package
            logging.warning("judge %s skipped: %s", name, exc)
            continue
        x = torch.as_tensor(images, dtype=torch.float32, device=device)
        size = tuple(model.input_contract.size)
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        with torch.no_grad():
            prob = torch.softmax(model(x), dim=1).cpu().numpy()
        hits = sum(int(prob[i].argmax() == u) for i, u in enumerate(units))
        scores[name] = (hits, float(np.mean([prob[i, u] for i, u in enumerate(units)])))
    return scores


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--modes", default="eager:float32,folded:float32,eager:bf16",
                    help="comma-separated engine:precision; eager:float32 (the reference) is always run")
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--full-iters", type=int, default=0)
    ap.add_argument("--units", default="1,9,107,130,145")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = create_model("efficientnet_lite0").to(device).requires_grad_(False)
    modes = [Execution("eager", "float32")] + [Execution(*m.split(":")) for m in args.modes.split(",")
                                               if m != "eager:float32"]
    modes = [m.on(device) for m in modes]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    print(f"EfficientNet-Lite0 fc8:130, Table-1 row 3, seed 0, {args.iters} iterations, {name}: obj against eager "
          "true float32, relative to max |obj|")
    print(f"{'engine':>8} {'precision':>9} {'it. 0':>9} {'max 0-9':>9} {'max all':>9} {'> 1e-6 at':>9} "
          f"{'> 1e-3 at':>9} {'last obj':>9}")
    reference = None
    for mode in modes:
        (res,), _ = run(model, [130], args.iters, mode, device)
        obj = np.asarray(res.obj, np.float64)
        if reference is None:
            reference = obj
        rel = np.abs(obj - reference) / np.abs(reference).max()
        print(f"{mode.engine:>8} {mode.precision:>9} {rel[0]:9.1e} {rel[:10].max():9.1e} {rel.max():9.1e} "
              f"{str(first_above(rel, 1e-6)):>9} {str(first_above(rel, 1e-3)):>9} {obj[-1]:9.4f}")
    if args.full_iters:
        units = [int(u) for u in args.units.split(",")]
        print(f"\nfull runs: units {units}, {args.full_iters} iterations, one batch per mode")
        print(f"{'engine':>8} {'precision':>9} {'seconds':>8} {'mean best':>9} {'majority':>8}  judges (top-1, mean p)")
        for mode in modes:
            results, seconds = run(model, units, args.full_iters, mode, device)
            best = np.stack([r.best_xx for r in results])
            scores = judge(best, units, device)
            majority = sum(r.meta_result.endswith("majority success") for r in results)
            text = ", ".join(f"{k.replace('efficientnet_', '')} {h}/{len(units)} p {p:.2f}" for k, (h, p) in
                             scores.items())
            print(f"{mode.engine:>8} {mode.precision:>9} {seconds:8.1f} {np.mean([r.best_obj for r in results]):9.2f} "
                  f"{majority:>4}/{len(units)}  {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
