#!/usr/bin/env python3
"""The torchlight README's interpolation between two channels on the embedded EfficientNet-Lite0.

torchlight interpolates ``mixed4a:479`` and ``mixed4b:360`` of InceptionV1; here channel 47 of ``_blocks.10``
and channel 160 of ``_blocks.11``. A batch of three Fourier images with decorrelated colour: image 0 maximises
the first channel, image 1 the second, image 2 both (the README's sum of four objectives), with lucid's standard
transforms and Adam lr 0.05.

    python examples/torchlight_interpolate.py --steps 256 --output doc/optvis_interpolate.png

Writes one PNG with the three images side by side (show_images); refuses to overwrite it without --brave.
"""

from __future__ import annotations

import argparse
import sys
import time

from _example import example_parser, prepare_run, report  # noqa: E402,I001  (puts the checkout on sys.path)

from dvtoolbox.models.registry import create_model  # noqa: E402
from dvtoolbox.optvis import FeatureViz, create_objective, get_image, show_images  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    parser = example_parser(__doc__, 'doc/optvis_interpolate.png', 'the three images')
    parser.add_argument("--neuron1", default="_blocks.10:47", help="first 'layer:channel'")
    parser.add_argument("--neuron2", default="_blocks.11:160", help="second 'layer:channel'")
    parser.add_argument("--steps", type=int, default=256, help="optimisation steps")
    return parser


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    device = prepare_run(args)
    if device is None:
        return 2

    model = create_model("efficientnet_lite0")
    neuron1, neuron2 = args.neuron1, args.neuron2
    objective = (create_objective(neuron1, batch=0)      # only neuron1
                 + create_objective(neuron2, batch=1)    # only neuron2
                 + create_objective(neuron1, batch=2)    # both: between neuron1 ...
                 + create_objective(neuron2, batch=2))   # ... and neuron2
    fv = FeatureViz(model=model, objective=objective)
    start = time.time()
    images = fv.visualize(lambda: get_image(w=224, batch=3, decorrelate=True), thresholds=[args.steps],
                          lr=args.lr, seed=args.seed, device=device, show_progress=True)
    elapsed = time.time() - start
    show_images(images[-1], [neuron1, neuron2, neuron1 + " and " + neuron2], path=args.output,
                panel_inches=2.0)  # 200-pixel panels keep the PNG under 300 KB
    report(fv, elapsed, device, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
