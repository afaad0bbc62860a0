#!/usr/bin/env python3
"""A ResNet, a ConvNeXt and a ViT from torchvision, and a module of your own, through the library.

Each model is taken by name (torchvision's zoo; timm's with ``timm:<name>``) and visualised at a hidden layer: a
ResNet block (channels first), a ConvNeXt block and a layer inside it that computes channels-last, and a ViT encoder
layer (tokens: a channel is the feature averaged over the patch tokens). With ``--weights default`` the models come
with torchvision's ImageNet weights from your torch cache (downloaded there once, online); ``--weights none`` (the
default here, so that it runs anywhere) uses random weights, whose images mean nothing but show the machinery.

    python examples/any_model.py --steps 64 --output doc/any_model.png            # random weights
    python examples/any_model.py --weights default --steps 256 --brave          # real weights, from the cache

Writes one PNG, a row per model; refuses to overwrite it without --brave.
"""

from __future__ import annotations

import sys
import time

from _example import example_parser, prepare_run  # noqa: E402,I001  (puts the checkout on sys.path)

import torch  # noqa: E402
from torch import nn  # noqa: E402

from dvtoolbox.io.images import save_image, tile_images  # noqa: E402
from dvtoolbox.models.load import load_model  # noqa: E402
from dvtoolbox.optvis import FeatureViz, get_image  # noqa: E402

RUNS = [  # (model, objective): one hidden channel each, and a neuron on the ViT's patch grid
    ("resnet50", "layer3:11"),
    ("convnext_tiny", "features.5.1:7 + features.5.1.block.3:40"),
    ("vit_b_16", "encoder.layers.encoder_layer_6:100"),
    ("vit_b_16", "encoder.layers.encoder_layer_6:100:7:7"),
]


def my_own_module() -> nn.Module:
    """The five lines a user needs: any nn.Module (here an untrained one) and a layer name."""
    return nn.Sequential(nn.Conv2d(3, 16, 5, padding=2), nn.ReLU(), nn.Conv2d(16, 32, 5, padding=2), nn.ReLU())


def get_args_parser():
    parser = example_parser(__doc__, "doc/any_model.png", "one image per model")
    parser.add_argument("--steps", type=int, default=64, help="optimisation steps")
    parser.add_argument("--weights", default="none", choices=("none", "default"),
                        help="random weights (none) or the models' own, from the torch cache (default)")
    return parser


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    device = prepare_run(args)
    if device is None:
        return 2
    torch.manual_seed(args.seed)  # random weights, when asked for, are drawn from torch's RNG
    rows = []
    for name, objective in RUNS + [(None, "2:5")]:
        model = load_model(name, weights=None if args.weights == "none" else "default") if name else my_own_module()
        fv = FeatureViz(model, objective)                       # a plain module needs nothing more
        start = time.time()
        (images,) = fv.visualize(lambda: get_image(224), thresholds=[args.steps], lr=args.lr, seed=args.seed,
                                 device=device)
        print(f"{name or 'your own nn.Sequential'}: {fv.objective}: objective {fv.history[0]:.3g} -> "
              f"{fv.history[-1]:.3g} in {time.time() - start:.1f} s")
        rows.append(images[0])
    save_image(args.output, tile_images([rows]))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
