#!/usr/bin/env python3
"""The torchlight README's second example (the sum of two channels' objectives) on the embedded EfficientNet-Lite0.

torchlight adds ``mixed4a:97`` and ``mixed5a:143`` of InceptionV1; here channel 97 of ``_blocks.10`` (the
single-channel example's) plus channel 143 of ``_blocks.12`` (192 channels, 7 x 7, a later block), with the
README's settings: Fourier parameterisation with decorrelated colour, lucid's standard transforms, Adam lr 0.05.

    python examples/torchlight_sum_of_channels.py --steps 256 --output doc/optvis_sum_of_channels.png

Writes one PNG (the image after the last step); refuses to overwrite it without --brave.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from dvtoolbox.io.images import save_image  # noqa: E402
from dvtoolbox.models.registry import create_model  # noqa: E402
from dvtoolbox.optvis import FeatureViz, create_objective, get_image  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--first", default="_blocks.10:97", help="first 'layer:channel'")
    parser.add_argument("--second", default="_blocks.12:143", help="second 'layer:channel'")
    parser.add_argument("--steps", type=int, default=256, help="optimisation steps")
    parser.add_argument("--lr", type=float, default=0.05, help="Adam learning rate")
    parser.add_argument("--seed", type=int, default=0, help="seed of the torch.Generator")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when present)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--output", default="doc/optvis_sum_of_channels.png", help="PNG of the last image")
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
    objective = create_objective(args.first) + create_objective(args.second)  # objectives add
    fv = FeatureViz(model=model, objective=objective)
    start = time.time()
    images = fv.visualize(lambda: get_image(w=224, decorrelate=True), thresholds=[args.steps], lr=args.lr,
                          seed=args.seed, device=device, show_progress=True)
    elapsed = time.time() - start
    save_image(args.output, images[-1][0])
    print(f"{fv.objective}: objective {fv.history[0]:.4f} at step 1, {fv.history[-1]:.4f} at step "
          f"{len(fv.history)}; {elapsed:.1f} s on {device}; wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
