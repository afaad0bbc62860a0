"""``python -m dvtoolbox.cli.layer_page``: from a folder of photographs to a browsable layer in one command.

    python -m dvtoolbox.cli.layer_page --layer _blocks.5 --units 0:8 photos/ page/      # then open page/synthetic/index.html

Runs find_max_acts, crop_max_patches and optimize_image for the units of one layer and builds the gallery page that
shows each unit's synthetic image beside its top crops (``dvtoolbox.exemplars.layer_page``; doc/exemplars.md).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from dvtoolbox.cli.arguments import (add_brave_argument, add_model_arguments, layouts_from_args, model_options,
                                     new_parser)
from dvtoolbox.cli.exit_status import run_command
from dvtoolbox.errors import UsageError
from dvtoolbox.exemplars.layer_page import LayerPageJob, run_layer_page
from dvtoolbox.run.context import ModelChoice

PROG = "python -m dvtoolbox.cli.layer_page"
FLAGS = {"n_top": "--N", "weights": "--model-weights", "layouts": "--layout", "max_iter": "--max-iter",
         "units": "--units", "push_channel": "--units", "rand_seed": "--seed", "layer": "--layer", "layers": "--layer", "outdir": "outdir", "datadir": "datadir", "filelist": "filelist"}


def get_parser() -> argparse.ArgumentParser:
    parser = new_parser(PROG, "From a folder of photographs to a browsable layer: each chosen unit's top crops "
                              "(find_max_acts.py, crop_max_patches.py) beside its synthetic image "
                              "(optimize_image.py) on one page, OUTDIR/synthetic/index.html (doc/exemplars.md).")
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="datadir [filelist] outdir: the photographs (a folder tree, or the original's datadir "
                             "and filelist) and the page's folder (empty or absent, else --brave).")
    parser.add_argument("--layer", required=True, help="The layer (see optimize_image.py --list-layers).")
    parser.add_argument("--units", default="0:8",
                        help="The units shown: 130, 1,130,554, 0:8 (end excluded) or all. (default: 0:8)")
    parser.add_argument("--N", dest="n_top", type=int, default=9, help="Top images (crops) per unit.")
    parser.add_argument("--max-iter", type=int, default=300,
                        help="Steps of each synthetic image (the README's first command's settings otherwise).")
    parser.add_argument("--seed", type=int, default=0, help="The synthetic images' random seed.")
    net = parser.add_argument_group("the network")
    add_model_arguments(net)
    run = parser.add_argument_group("the run")
    run.add_argument("--batch-size", type=int, default=32, help="Images per forward pass of find_max_acts.")
    run.add_argument("--workers", type=int, default=None,
                     help="DataLoader processes decoding images (0: in the main process). (default: the cores but "
                          "one, at most 8)")
    run.add_argument("--device", default=None, help="cpu, cuda or cuda:N. (default: cuda when present, else cpu)")
    run.add_argument("--progress", default=None, action=argparse.BooleanOptionalAction,
                     help="A progress bar on stderr. (default: when stderr is a terminal)")
    add_brave_argument(run)
    run.add_argument("-v", "--verbose", action="store_true", help="Log each stage.")
    return parser


def job_from_args(args: argparse.Namespace) -> LayerPageJob:
    paths = list(args.paths)
    if len(paths) not in (2, 3):
        raise UsageError(f"expected datadir [filelist] outdir, got {len(paths)} paths")
    return LayerPageJob(ModelChoice(args.model, **model_options(args)), paths[0], paths[-1], args.layer,
                        units=args.units, n_top=args.n_top, filelist=paths[1] if len(paths) == 3 else None,
                        max_iter=args.max_iter, seed=args.seed, batch_size=args.batch_size, workers=args.workers,
                        device=args.device, brave=args.brave, progress=args.progress,
                        layouts=layouts_from_args(args))


def _main(argv: Optional[Sequence[str]]) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    print(run_layer_page(job_from_args(args)))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Returns the exit status: 0 ok, 2 bad input, 1 other failure."""
    return run_command(PROG, lambda: _main(argv), flags=FLAGS)


if __name__ == "__main__":
    sys.exit(main())
