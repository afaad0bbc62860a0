#!/usr/bin/env python
"""Which recipe for a dictionary's latents on a token layer: lucid (fft) against MACO, on latents of a random
dictionary bound to a ViT block (issue 22's "dictionary latent" row of recipe auto's table).

A random dictionary (``--latents`` unit-norm random directions over the layer's channels, seeded, no bias) is written
as a plain safetensors file; ``visualize.py --units 0:UNITS --batch UNITS`` (``VisualizeJob``, ``run_visualize``)
renders its first latents once per recipe, same steps and seed. Printed per recipe and latent: the latent's value
(its mean pre-activation over the patch tokens on the image as written, info.txt's ``value``) and the patch-grid
peak of the image (``naturalness.grid_peak``: about 1 without a grid; a ViT's 16-pixel patch grid raises it). A ViT
with random weights cannot be judged for what its latents mean; what can be measured is how strongly each recipe
drives a latent and whether it paints the patch grid. Not a test.

    OMP_NUM_THREADS=1 python benchmarks/dictionary_recipes.py --out /tmp/dict_recipes
"""

from __future__ import annotations

import argparse
import os
import re
import sys

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from naturalness import grid_peak  # noqa: E402  (benchmarks/, the script's folder)
from dvtoolbox.dictionaries.binding import parse_dictionary_bindings  # noqa: E402
from dvtoolbox.io.images import load_image_rgb  # noqa: E402
from dvtoolbox.optvis.job import VisualizeJob, run_visualize  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", required=True, help="folder of the runs (made; existing runs are replaced)")
    parser.add_argument("--model", default="timm:vit_tiny_patch16_224")
    parser.add_argument("--model-weights", default="none")
    parser.add_argument("--layer", default="blocks.6")
    parser.add_argument("--channels", type=int, default=192, help="the layer's channels (the dictionary's d_in)")
    parser.add_argument("--latents", type=int, default=256)
    parser.add_argument("--units", type=int, default=6, help="latents rendered (0..UNITS-1), one batch")
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--recipes", default="lucid,maco")
    parser.add_argument("--seed", type=int, default=0, help="of the renders; the dictionary's is 0")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser


def write_random_dictionary(path: str, d_in: int, n: int) -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(d_in, n, generator=g)
    save_file({"W_enc": (w / w.norm(dim=0, keepdim=True)).contiguous(), "b_enc": torch.zeros(n)}, path)


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "random_dictionary.safetensors")
    write_random_dictionary(path, args.channels, args.latents)
    dictionaries = parse_dictionary_bindings([f"sae={args.layer}={path}"])
    rows = {}
    for recipe in args.recipes.split(","):
        folder = os.path.join(args.out, recipe)
        run_visualize(VisualizeJob(objective="sae", units=f"0:{args.units}", batch=args.units, recipe=recipe,
                                   thresholds=(args.steps,), seed=args.seed, model=args.model,
                                   weights=None if args.model_weights == "none" else args.model_weights,
                                   device=args.device, dictionaries=dictionaries, output_dir=folder, brave=True))
        values, images = [], []
        for k in range(args.units):
            prefix = os.path.join(folder, f"viz_sae_{k:04d}")
            with open(f"{prefix}_info.txt", encoding="utf-8") as handle:
                info = handle.read()
            values.append(float(re.search(r"^value at step \d+: (\S+)$", info, re.M).group(1)))
            images.append(load_image_rgb(f"{prefix}_step{args.steps}_0.png").astype(np.float64) / 255.0)
        rows[recipe] = (values, grid_peak(np.stack(images)))
    print(f"{args.model} ({args.model_weights} weights) {args.layer}, random dictionary {args.channels} -> "
          f"{args.latents}, latents 0..{args.units - 1}, {args.steps} steps, seed {args.seed}, {args.device}")
    print("| recipe | value per latent | mean value | patch-grid peak per image | mean peak |")
    print("| --- | --- | --- | --- | --- |")
    for recipe, (values, peaks) in rows.items():
        print(f"| {recipe} | {' '.join(f'{v:.3g}' for v in values)} | {np.mean(values):.3g} | "
              f"{' '.join(f'{p:.2f}' for p in peaks)} | {np.mean(peaks):.2f} |")
    first, *others = list(rows)
    for other in others:
        higher = sum(b > a for a, b in zip(rows[first][0], rows[other][0]))
        print(f"{other} drives the latent higher than {first} on {higher} of {args.units}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
