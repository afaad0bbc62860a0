"""find_max_acts.py: each unit's top N images of a dataset (the original's ``find_maxes/find_max_acts.py``).

    find_max_acts.py [--N 9] net_prototxt net_weights datadir filelist outfile     # the original's form: a Caffe net
    find_max_acts.py [--N 9] [--model NAME] datadir [filelist] outfile            # any model the project reads

The work is ``dvtoolbox.exemplars.job.run_find_maxes``; the file it writes is described in
``dvtoolbox.exemplars.tracker`` and doc/exemplars.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from dvtoolbox.cli.arguments import (DICTIONARY_AS_LAYER, add_brave_argument, add_dictionary_arguments, add_model_arguments,
                                     dictionaries_from_args, layouts_from_args, model_options, new_parser)
from dvtoolbox.cli.exit_status import run_command
from dvtoolbox.device import PRECISIONS
from dvtoolbox.errors import UsageError
from dvtoolbox.exemplars.derived import parse_directions, parse_unit
from dvtoolbox.exemplars.histogram import DEFAULT_BINS, MAX_BINS, MIN_BINS
from dvtoolbox.exemplars.job import FindMaxesJob, run_find_maxes
from dvtoolbox.models.registry import DEFAULT_MODEL
from dvtoolbox.run.context import ModelChoice

PROG = "find_max_acts.py"
FLAGS = {"dictionary": "--dictionary", "n_top": "--N", "weights": "--model-weights", "layouts": "--layout", "output_prefix": "outfile",
         "filelist": "filelist", "datadir": "datadir"}


def get_parser() -> argparse.ArgumentParser:
    parser = new_parser(PROG, "Find, for every unit of some layers, the N images of a dataset that activate it most "
                              "(a conv unit: its maximum over positions), with where and how much; writes the "
                              "tracker file that crop_max_patches.py reads (doc/exemplars.md).")
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="net_prototxt net_weights datadir filelist outfile (the original's form, a Caffe net), "
                             "or datadir [filelist] outfile (with --model). filelist: one 'relative/path [label]' "
                             "per line; without it every image under datadir, sorted. datadir may also be tar shards "
                             "in webdataset's layout (then no filelist): one .tar file, a folder of .tar files "
                             "(sorted), or a brace pattern such as 'shards/train-{000000..000099}.tar' (quote it; "
                             "expanded here); each sample's .jpg/.png/.jpeg/.webp/.ppm/.bmp member is its image "
                             "(the first of these it has), its .cls member its label.")
    parser.add_argument("--N", dest="n_top", type=int, default=9, help="Note and save top N activations.")
    net = parser.add_argument_group("the network (when the paths do not name a Caffe net)")
    add_model_arguments(net)
    add_dictionary_arguments(net, DICTIONARY_AS_LAYER)
    parser.set_defaults(model=None)  # None: the default model, or the Caffe net the five paths name
    net.add_argument("--include-prefix", action="store_true",
                     help="A token layer's units read over all its tokens, the class token too (then the position "
                          "is the token index, without a grid). (default: the patch tokens on their grid)")
    run = parser.add_argument_group("the run")
    run.add_argument("--layers", default=None,
                     help="Comma-separated layer names (see optimize_image.py --list-layers). (default: the "
                          "original's conv1..conv5, fc6, fc7, fc8, prob that the model has, else every Conv2d and "
                          "Linear layer)")
    run.add_argument("--unit", action="append", default=[], metavar="NAME=EXPR",
                     help="A derived unit tracked as group NAME (repeatable): EXPR a linear combination in the "
                          "objective grammar. Channels of one layer ('fc8:1 + 0.5 * fc8:2') make a virtual channel "
                          "of it (max over positions, crops from its field); position terms ('conv1:0:3:4') or "
                          "several layers make one value per image (kind fc, crop the whole image). With --unit or "
                          "--directions and no --layers, only the derived units are tracked.")
    run.add_argument("--directions", action="append", default=[], metavar="NAME=LAYER:FILE.npy",
                     help="K virtual channels of LAYER as group NAME (repeatable): FILE.npy a (K, C) or (C,) float "
                          "array (no pickles); unit k's value at a position is the plain dot product of row k with "
                          "the channel vector there (not a cosine), max over positions.")
    run.add_argument("--batch-size", type=int, default=32, help="Images per forward pass.")
    run.add_argument("--workers", type=int, default=None,
                     help="DataLoader processes decoding images (0: in the main process). (default: the cores but "
                          "one, at most 8)")
    run.add_argument("--device", default=None, help="cpu, cuda or cuda:N. (default: cuda when present, else cpu)")
    run.add_argument("--precision", default="float32", choices=PRECISIONS,
                     help="float32 (true float32), tf32 (CUDA's TF32 tensor cores) or bf16 (bfloat16 autocast).")
    run.add_argument("--progress", default=None, action=argparse.BooleanOptionalAction,
                     help="A progress bar with images/s on stderr. (default: when stderr is a terminal)")
    run.add_argument("--checkpoint-every", type=int, default=100, metavar="K",
                     help="Write the running top N to OUTFILE.part every K batches (0: never), so that --resume "
                          "takes up after a kill.")
    run.add_argument("--hist-bins", type=int, default=DEFAULT_BINS, metavar="B",
                     help=f"Bins of each unit's activation histogram over the dataset (0: none; {MIN_BINS} .. {MAX_BINS}), "
                          "fixed by the first 64 images of the list (doc/exemplars.md).")
    run.add_argument("--resume", action="store_true",
                     help="Take up from OUTFILE.part (each torchrun rank from its own part), counting no image twice.")
    add_brave_argument(run)
    run.add_argument("-v", "--verbose", action="store_true", help="Log the plan and the throughput.")
    return parser


def job_from_args(args: argparse.Namespace) -> FindMaxesJob:
    paths = list(args.paths)
    if len(paths) == 5:
        if args.model is not None:
            raise UsageError("the five-path form names a Caffe net (net_prototxt net_weights datadir filelist "
                             "outfile); with --model give datadir [filelist] outfile", "model")
        choice = ModelChoice(deploy_proto=paths[0], net_weights=paths[1])
        datadir, filelist, outfile = paths[2:]
    elif len(paths) in (2, 3):
        choice = ModelChoice(args.model or DEFAULT_MODEL, **model_options(args))
        datadir, filelist, outfile = paths[0], (paths[1] if len(paths) == 3 else None), paths[-1]
    else:
        raise UsageError(f"expected net_prototxt net_weights datadir filelist outfile, or datadir [filelist] outfile; "
                         f"got {len(paths)} paths")
    layers = None
    if args.layers is not None:
        layers = tuple(name.strip() for name in args.layers.split(","))
        if not all(layers):
            raise UsageError(f"layers must be comma-separated layer names, got {args.layers!r}", "layers")
    return FindMaxesJob(choice, datadir, outfile, filelist, n_top=args.n_top, layers=layers,
                        batch_size=args.batch_size, workers=args.workers, device=args.device,
                        precision=args.precision, brave=args.brave, layouts=layouts_from_args(args),
                        include_prefix=args.include_prefix, progress=args.progress,
                        checkpoint_every=args.checkpoint_every, resume=args.resume, hist_bins=args.hist_bins,
                        units=tuple(parse_unit(t) for t in args.unit) + tuple(parse_directions(t)
                                                                              for t in args.directions),
                        dictionaries=dictionaries_from_args(args))


def _main(argv: Optional[Sequence[str]]) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    run_find_maxes(job_from_args(args))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run find_max_acts.py; returns the exit status (0 ok, 2 bad input, 1 other failure)."""
    return run_command(PROG, lambda: _main(argv), interrupted="interrupted; the outfile was not written (the checkpoint "
                       "OUTFILE.part, if any, lets --resume take up)", flags=FLAGS)


if __name__ == "__main__":
    sys.exit(main())
