#!/usr/bin/env python3
"""lucid's alpha notebook, first cell: random images from the Fourier prior, decay_power x decorrelate, as one PNG.

Rows: decorrelate False then True, each with decay_power 1, 1.5, 2; columns: sd = 20 ** (1 - decay_power) * k / 20
for k = 0 .. 9 (k = 0 is flat grey), 64 x 64 each (``dvtoolbox.optvis.image_sample_grid``).

    python examples/transparency_samples.py --output doc/transparency_samples.png

Refuses to overwrite --output without --brave.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from dvtoolbox.io.images import save_image, tile_images  # noqa: E402
from dvtoolbox.optvis.alpha import image_sample_grid  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--size", type=int, default=64, help="width and height of each sample")
    parser.add_argument("--n", type=int, default=10, help="samples per row (sd grows with the column)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the torch.Generator")
    parser.add_argument("--output", default="doc/transparency_samples.png", help="the grid PNG")
    parser.add_argument("--brave", action="store_true", help="overwrite --output if it exists")
    return parser


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    if os.path.exists(args.output) and not args.brave:
        print(f"{args.output} exists; add --brave to overwrite it", file=sys.stderr)
        return 2
    grid = image_sample_grid(w=args.size, n=args.n, seed=args.seed)
    save_image(args.output, tile_images([list(row) for row in grid], pad=2))
    print(f"wrote {args.output}: rows decorrelate False/True x decay_power 1, 1.5, 2; {args.n} samples each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
