#!/usr/bin/env python3
"""lucid's alpha notebook, experiment 2: foregrounds with a shared parameterisation over eight backgrounds.

For one unit and each --coefs value, ``alpha_experiment_2`` with the notebook's ``bg_list``
(``dvtoolbox.optvis.backgrounds.EXPERIMENT2_BACKGROUNDS``: five adversarial, then three allied), w 128, jitter_n 2,
alpha coef 1e4 (target 0.25), lucid's standard transforms, Adam lr 0.05, 512 steps: a batch of 16. Writes one
figure: a row per coefficient of the eight foregrounds over a checkerboard, then a row of the eight backgrounds (of
the last run); RGBA PNGs and ``summary_shared.json`` go to --rgba-dir.

    python examples/transparency_shared.py --device cuda
    python examples/transparency_shared.py --steps 128 --size 64 --coefs 0 1      # smaller, for a CPU

Refuses to overwrite the figure without --brave.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from dvtoolbox.io.atomic import write_text_atomic  # noqa: E402
from dvtoolbox.io.images import over_checkerboard, save_image, save_rgba_png, tile_images  # noqa: E402
from dvtoolbox.optvis.alpha import alpha_experiment_2  # noqa: E402
from dvtoolbox.optvis.backgrounds import EXPERIMENT2_BACKGROUNDS  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from transparency_backgrounds import add_common_args, setup, unit_slug  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--unit", default="fc8:1", help="'layer:channel'")
    parser.add_argument("--coefs", type=float, nargs="+", default=[0.0, 0.5, 1.0], help="shared_param_coef values")
    parser.add_argument("--output", default="doc/transparency_shared.png", help="the figure")
    parser.add_argument("--rgba-dir", default="optimize_results/transparency", help="RGBA PNGs and the summary")
    add_common_args(parser)
    return parser


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    summary_path = os.path.join(args.rgba_dir, "summary_shared.json")
    existing = [path for path in (args.output, summary_path) if os.path.exists(path)]
    if existing and not args.brave:
        print(f"{existing[0]} exists; add --brave to overwrite it", file=sys.stderr)
        return 2
    device, model = setup(args)
    os.makedirs(args.rgba_dir, exist_ok=True)
    layer, channel = args.unit.split(":")[0], int(args.unit.split(":")[1])
    summary = {"settings": {k: v for k, v in vars(args).items() if k != "brave"}, "device": device,
               "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu", "runs": []}
    rows, start = [], time.perf_counter()
    for coef in args.coefs:
        result = alpha_experiment_2(model, layer, channel, EXPERIMENT2_BACKGROUNDS, w=args.size, jitter_n=args.jitter,
                                    shared_param_coef=coef, steps=args.steps, lr=args.lr, seed=args.seed,
                                    device=device)
        rows.append([over_checkerboard(rgba) for rgba in result.rgba])
        for n, rgba in enumerate(result.rgba):
            save_rgba_png(os.path.join(args.rgba_dir, f"shared_{unit_slug(args.unit)}_coef{coef:g}_{n}.png"), rgba)
        summary["runs"].append({"coef": coef, "alpha_means": list(result.alpha_means),
                                "adversarial": list(result.adversarial), "objective_last": result.history[-1],
                                "seconds": round(result.seconds, 2)})
        print(f"shared_param_coef {coef:g}: alpha means {', '.join(f'{m:.3f}' for m in result.alpha_means)}; "
              f"{result.seconds:.1f} s", flush=True)
    rows.append(list(result.backgrounds))
    save_image(args.output, tile_images(rows, pad=2))
    summary["seconds_total"] = round(time.perf_counter() - start, 1)
    write_text_atomic(summary_path, json.dumps(summary, indent=1))
    print(f"wrote {args.output}; total {summary['seconds_total']} s on {summary['device_name']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
