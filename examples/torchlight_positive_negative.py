#!/usr/bin/env python3
"""The torchlight README's positive and negative optimisation (one channel raised in image 0, lowered in image 1)
on the embedded EfficientNet-Lite0.

torchlight uses ``mixed4b:154`` of InceptionV1; here channel 154 of ``_blocks.11`` (192 channels, 7 x 7), with
``create_objective(spec, batch=0) - create_objective(spec, batch=1)`` on a batch of two Fourier images with
decorrelated colour, lucid's standard transforms, Adam lr 0.05.

    python examples/torchlight_positive_negative.py --steps 256 --output doc/optvis_positive_negative.png

Writes one PNG with the two images side by side (show_images); refuses to overwrite it without --brave.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from dvtoolbox.models.registry import create_model  # noqa: E402
from dvtoolbox.optvis import FeatureViz, create_objective, get_image, show_images  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--objective", default="_blocks.11:154", help="'layer:channel' to raise and to lower")
    parser.add_argument("--steps", type=int, default=256, help="optimisation steps")
    parser.add_argument("--lr", type=float, default=0.05, help="Adam learning rate")
    parser.add_argument("--seed", type=int, default=0, help="seed of the torch.Generator")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when present)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--output", default="doc/optvis_positive_negative.png", help="PNG of the two images")
    parser.add_argument("--brave", action="store_true", help="overwrite --output if it exists")
    return parser


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if os.path.exists(args.output) and not args.brave:
        print(f"{args.output} exists; add --brave to overwrite it", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")

    model = create_model("efficientnet_lite0")
    # maximise the channel in image 0 and minimise it in image 1
    objective = create_objective(args.objective, batch=0) - create_objective(args.objective, batch=1)
    fv = FeatureViz(model=model, objective=objective)
    start = time.time()
    images = fv.visualize(lambda: get_image(w=224, batch=2, decorrelate=True), thresholds=[args.steps],
                          lr=args.lr, seed=args.seed, device=device, show_progress=True)
    elapsed = time.time() - start
    show_images(images[-1], [f"{args.objective} positive", f"{args.objective} negative"], path=args.output,
                panel_inches=2.0)  # 200-pixel panels keep the PNG under 300 KB
    print(f"{fv.objective}: objective {fv.history[0]:.4f} at step 1, {fv.history[-1]:.4f} at step "
          f"{len(fv.history)}; {elapsed:.1f} s on {device}; wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
