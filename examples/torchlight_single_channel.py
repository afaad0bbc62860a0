#!/usr/bin/env python3
"""The torchlight README's first example (one channel of a mid-level layer) on the embedded EfficientNet-Lite0.

torchlight visualises channel 97 of InceptionV1's ``mixed4a``; dvtoolbox has no InceptionV1 yet, so this runs
channel 97 of ``_blocks.10`` (112 channels, 14 x 14, a mid-level block of EfficientNet-Lite0) with the README's
settings: Fourier parameterisation with decorrelated colour, lucid's standard transforms, Adam lr 0.05, seed 0.

    python examples/torchlight_single_channel.py --threshold 256 --output doc/optvis_blocks10_97.png

Writes one PNG (the image after the last threshold); refuses to overwrite it without --brave.
"""

from __future__ import annotations

import argparse
import sys
import time

from _example import example_parser, prepare_run, report  # noqa: E402,I001  (puts the checkout on sys.path)

from dvtoolbox.io.images import save_image  # noqa: E402
from dvtoolbox.models.registry import create_model  # noqa: E402
from dvtoolbox.optvis import FeatureViz, get_image  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    parser = example_parser(__doc__, 'doc/optvis_blocks10_97.png', 'the last image')
    parser.add_argument("--objective", default="_blocks.10:97", help="'layer:channel' or 'layer:channel:y:x'")
    parser.add_argument("--threshold", type=int, nargs="+", default=[256], help="steps at which images are kept")
    return parser


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    device = prepare_run(args)
    if device is None:
        return 2

    model = create_model("efficientnet_lite0")
    fv = FeatureViz(model=model, objective=args.objective)
    start = time.time()
    images = fv.visualize(lambda: get_image(w=224, decorrelate=True), thresholds=args.threshold, lr=args.lr,
                          seed=args.seed, device=device, show_progress=True)
    elapsed = time.time() - start
    save_image(args.output, images[-1][0])
    report(fv, elapsed, device, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
