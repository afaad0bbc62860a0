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
import sys
import time

from _example import example_parser, prepare_run, report  # noqa: E402,I001  (puts the checkout on sys.path)

from dvtoolbox.io.images import save_image  # noqa: E402
from dvtoolbox.models.registry import create_model  # noqa: E402
from dvtoolbox.optvis import FeatureViz, create_objective, get_image  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    parser = example_parser(__doc__, 'doc/optvis_sum_of_channels.png', 'the last image')
    parser.add_argument("--first", default="_blocks.10:97", help="first 'layer:channel'")
    parser.add_argument("--second", default="_blocks.12:143", help="second 'layer:channel'")
    parser.add_argument("--steps", type=int, default=256, help="optimisation steps")
    return parser


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    device = prepare_run(args)
    if device is None:
        return 2

    model = create_model("efficientnet_lite0")
    objective = create_objective(args.first) + create_objective(args.second)  # objectives add
    fv = FeatureViz(model=model, objective=objective)
    start = time.time()
    images = fv.visualize(lambda: get_image(w=224, decorrelate=True), thresholds=[args.steps], lr=args.lr,
                          seed=args.seed, device=device, show_progress=True)
    elapsed = time.time() - start
    save_image(args.output, images[-1][0])
    report(fv, elapsed, device, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
