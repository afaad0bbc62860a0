#!/usr/bin/env python3
"""lucid's alpha notebook, experiment 1 (its ``test()``): each unit with the seven backgrounds, on EfficientNet-Lite0.

For each unit and each background of ``dvtoolbox.optvis.backgrounds.TEST_BACKGROUNDS`` (adversarial image full,
adversarial image random offset, adversarial color, noise, allied color, allied image random offset, allied image
full), ``alpha_experiment`` with the notebook's settings: w 128, jitter_n 2, alpha_loss_coef 1e4 (target 0.25),
lucid's standard transforms, Adam lr 0.05, 512 steps. Writes, per unit, one figure ``<prefix>_<unit>.png``: one
column per background; rows = the RGBA result over a checkerboard, over white, and the background.
The RGBA PNGs themselves go to --rgba-dir, with ``summary_backgrounds.json`` (alpha means, objective, seconds).

    python examples/transparency_backgrounds.py --device cuda                  # the notebook's size
    python examples/transparency_backgrounds.py --steps 256 --size 64          # smaller, for a CPU

Refuses to overwrite a figure without --brave.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from dvtoolbox.io.atomic import write_text_atomic  # noqa: E402
from dvtoolbox.io.images import over_checkerboard, over_white, save_image, save_rgba_png, tile_images  # noqa: E402
from dvtoolbox.models.registry import create_model  # noqa: E402
from dvtoolbox.optvis.alpha import alpha_experiment  # noqa: E402
from dvtoolbox.optvis.backgrounds import TEST_BACKGROUNDS  # noqa: E402

DEFAULT_UNITS = ["fc8:1", "fc8:107", "_blocks.10:97"]  # goldfish, jellyfish, the optvis.md channel


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Flags shared by the transparency examples."""
    parser.add_argument("--steps", type=int, default=512, help="optimisation steps (the notebook's 512)")
    parser.add_argument("--size", type=int, default=128, help="foreground width w (the notebook's 128)")
    parser.add_argument("--jitter", type=int, default=2, help="jitter_n between rgb, alpha and background")
    parser.add_argument("--lr", type=float, default=0.05, help="Adam learning rate")
    parser.add_argument("--seed", type=int, default=0, help="seed of the torch.Generator")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when present)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--weights", default="default", help="EfficientNet-Lite0 weights (.pth) or 'default'")
    parser.add_argument("--brave", action="store_true", help="overwrite existing figures")


def setup(args):
    """Logging, threads, device, and the model."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return device, create_model("efficientnet_lite0", weights=args.weights)


def unit_slug(unit: str) -> str:
    layer, channel = unit.split(":")[:2]
    return f"{layer.replace('.', '')}_{int(channel):04d}"


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--units", nargs="+", default=DEFAULT_UNITS, help="'layer:channel' units")
    parser.add_argument("--prefix", default="doc/transparency", help="figures are <prefix>_<unit>.png")
    parser.add_argument("--rgba-dir", default="optimize_results/transparency", help="RGBA PNGs and the summary")
    add_common_args(parser)
    return parser


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    figures = {unit: f"{args.prefix}_{unit_slug(unit)}.png" for unit in args.units}
    summary_path = os.path.join(args.rgba_dir, "summary_backgrounds.json")
    existing = [path for path in list(figures.values()) + [summary_path] if os.path.exists(path)]
    if existing and not args.brave:
        print(f"{existing[0]} exists; add --brave to overwrite it", file=sys.stderr)
        return 2
    device, model = setup(args)
    os.makedirs(args.rgba_dir, exist_ok=True)
    summary = {"settings": {k: v for k, v in vars(args).items() if k != "brave"}, "device": device,
               "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu", "runs": []}
    start_all = time.perf_counter()
    for unit in args.units:
        layer, channel = unit.split(":")[0], int(unit.split(":")[1])
        columns = []
        for name, adversarial, bg_func in TEST_BACKGROUNDS:
            result = alpha_experiment(model, layer, channel, bg_func, jitter_n=args.jitter, w=args.size,
                                      bg_adv=adversarial, steps=args.steps, lr=args.lr, seed=args.seed, device=device)
            rgba, background = result.rgba[0], result.backgrounds[0]
            save_rgba_png(os.path.join(args.rgba_dir, f"{unit_slug(unit)}_{name.replace(' ', '_')}.png"), rgba)
            columns.append([over_checkerboard(rgba), over_white(rgba), background])
            summary["runs"].append({"unit": unit, "background": name, "adversarial": adversarial,
                                    "alpha_mean": result.alpha_means[0], "objective_last": result.history[-1],
                                    "seconds": round(result.seconds, 2)})
            print(f"{unit:>16} {name:<32} alpha mean {result.alpha_means[0]:.3f}  objective "
                  f"{result.history[-1]:9.3f}  {result.seconds:6.1f} s", flush=True)
        rows = [[column[r] for column in columns] for r in range(3)]
        save_image(figures[unit], tile_images(rows, pad=2))
        print(f"wrote {figures[unit]}")
    summary["seconds_total"] = round(time.perf_counter() - start_all, 1)
    write_text_atomic(summary_path, json.dumps(summary, indent=1))
    print(f"total {summary['seconds_total']} s on {summary['device_name']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
