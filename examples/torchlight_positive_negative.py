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
import sys
import time

from _example import example_parser, prepare_run, report  # noqa: E402,I001  (puts the checkout on sys.path)

from dvtoolbox.models.registry import create_model  # noqa: E402
from dvtoolbox.optvis import FeatureViz, create_objective, get_image, show_images  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    parser = example_parser(__doc__, 'doc/optvis_positive_negative.png', 'the two images')
    parser.add_argument("--objective", default="_blocks.11:154", help="'layer:channel' to raise and to lower")
    parser.add_argument("--steps", type=int, default=256, help="optimisation steps")
    return parser


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    device = prepare_run(args)
    if device is None:
        return 2

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
    report(fv, elapsed, device, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
