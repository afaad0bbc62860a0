"""crop_max_patches.py: the crops, deconv and backprop images of each unit's top N (the original's
``find_maxes/crop_max_patches.py``).

    crop_max_patches.py [--do-*] nmt_pkl net_prototxt net_weights datadir filelist outdir layer   # a Caffe net
    crop_max_patches.py [--do-*] [--model NAME] nmt datadir [filelist] outdir layer              # any model

The work is ``dvtoolbox.exemplars.crop_job.run_crop_patches``; the folders it writes are described in
``dvtoolbox.exemplars.unit_pages`` and doc/exemplars.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence, Tuple

from dvtoolbox.cli.arguments import (DICTIONARY_AS_LAYER, add_brave_argument, add_dictionary_arguments, add_model_arguments,
                                     dictionaries_from_args, layouts_from_args, model_options, new_parser)
from dvtoolbox.cli.exit_status import run_command
from dvtoolbox.device import PRECISIONS
from dvtoolbox.errors import UsageError
from dvtoolbox.exemplars.crop_job import CropJob, run_crop_patches
from dvtoolbox.exemplars.tracker import load_maxes
from dvtoolbox.models.load import model_kind
from dvtoolbox.models.registry import DEFAULT_MODEL
from dvtoolbox.run.context import ModelChoice

PROG = "crop_max_patches.py"
FLAGS = {"dictionary": "--dictionary", "n_top": "--N", "N": "--N", "weights": "--model-weights", "layouts": "--layout", "output_prefix": "outdir",
         "filelist": "filelist", "datadir": "datadir", "layer": "layer", "what": "--do-*", "do": "--do-*"}
DO_FLAGS = (("maxes", "--do-maxes", "Output max patches (the crop of the image input: maxim_%%03d.png)."),
            ("deconv", "--do-deconv", "Output deconv patches (deconv_%%03d.png)."),
            ("deconv_norm", "--do-deconv-norm", "Output deconv-norm patches (deconvnorm_%%03d.png)."),
            ("backprop", "--do-backprop", "Output backprop patches (backprop_%%03d.png)."),
            ("backprop_norm", "--do-backprop-norm", "Output backprop-norm patches (backpropnorm_%%03d.png)."),
            ("info", "--do-info", "Output info.txt: the value, image and position of each rank."),
            ("histogram", "--do-histogram", "Output the unit's activation histogram over the dataset "
                                            "(histogram.png, histogram.txt; find_max_acts.py --hist-bins)."))


def get_parser() -> argparse.ArgumentParser:
    parser = new_parser(PROG, "Write, for units idx_begin..idx_end-1 of one layer, the crops of their top N images "
                              "(the unit's receptive field) and their deconv and backprop images, in the original's "
                              "layout outdir/layer/unit_%04d/ (doc/exemplars.md), from the tracker file "
                              "find_max_acts.py wrote.")
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="nmt_pkl net_prototxt net_weights datadir filelist outdir layer (the original's form, "
                             "a Caffe net), or nmt datadir [filelist] outdir layer (with --model). nmt: the tracker "
                             "file (find_max_acts.py's, or the original's maxes.pkl); datadir: the folder the "
                             "images are under, or the tar shards find_max_acts read (a .tar file, a folder of them, "
                             "or a brace pattern such as 'shards/train-{000000..000099}.tar'; they may have moved; "
                             "then no filelist); filelist: must be the same filelist used to produce the tracker "
                             "(required for the original's maxes.pkl; default: the list the tracker file records); "
                             "layer: one layer of the tracker file, or a derived group NAME (find_max_acts.py "
                             "--unit / --directions).")
    parser.add_argument("--N", dest="n_top", type=int, default=None, metavar="N",
                        help="Crop the top N of each unit. (default: the tracker file's N, 9 as the original's)")
    for dest, flag, text in DO_FLAGS:
        parser.add_argument(flag, dest="do_" + dest, action="store_true", help=text)
    parser.add_argument("--idx-begin", type=int, default=0, help="Start at this unit.")
    parser.add_argument("--idx-end", type=int, default=None,
                        help="End at this unit (exclusive). (default: the layer's number of units)")
    net = parser.add_argument_group("the network (when the paths do not name a Caffe net)")
    add_model_arguments(net, " (default: the model the tracker file records, with its weights, when it names one; "
                             f"else {DEFAULT_MODEL})")
    add_dictionary_arguments(net, DICTIONARY_AS_LAYER + "; give the dictionary find_max_acts ran with")
    parser.set_defaults(model=None)
    run = parser.add_argument_group("the run")
    run.add_argument("--device", default=None, help="cpu, cuda or cuda:N. (default: cuda when present, else cpu)")
    run.add_argument("--precision", default=None, choices=PRECISIONS,
                     help="Of the deconv and backprop passes: float32 (true float32), tf32 (CUDA's TF32 tensor cores) "
                          "or bf16 (bfloat16 autocast). (default: the one find_max_acts ran in, as the tracker file "
                          "records it)")
    add_brave_argument(run)
    run.add_argument("-v", "--verbose", action="store_true", help="Log the plan and each unit written.")
    return parser


def recorded_model(nmt: str) -> Tuple[str, dict]:
    """The model the tracker file records, by name, and its recorded weights ({"weights": ...}, or {} where none is
    recorded); the original's pickle records none: the default model. Code a tracker file names (a factory, a
    module file) is never run from it: a one-line UsageError asks for --model."""
    meta = load_maxes(nmt)[0]
    name = meta.get("model")
    if not isinstance(name, str) or not name:
        return DEFAULT_MODEL, {}
    if model_kind(name) != "name":
        raise UsageError(f"the tracker file {nmt} was made with {name}, which is code (a factory or a module "
                         "file) that a tracker file never runs: give it as model (a file of your own classes also "
                         "with --trust-model-file)", "model")
    return name, ({"weights": meta["weights"]} if "weights" in meta else {})


def job_from_args(args: argparse.Namespace) -> CropJob:
    paths = list(args.paths)
    if len(paths) == 7:
        if args.model is not None:
            raise UsageError("the seven-path form names a Caffe net (nmt_pkl net_prototxt net_weights datadir "
                             "filelist outdir layer); with --model give nmt datadir [filelist] outdir layer", "model")
        choice = ModelChoice(deploy_proto=paths[1], net_weights=paths[2])
        nmt, datadir, filelist, outdir, layer = paths[0], paths[3], paths[4], paths[5], paths[6]
    elif len(paths) in (4, 5):
        nmt, datadir = paths[0], paths[1]
        filelist, outdir, layer = (paths[2] if len(paths) == 5 else None), paths[-2], paths[-1]
        options = model_options(args)
        if args.model is not None:
            choice = ModelChoice(args.model, **options)
        else:
            name, recorded = recorded_model(nmt)
            if args.model_weights is not None:  # the weights given win over the recorded ones
                recorded = {}
            choice = ModelChoice(name, **{**options, **recorded})
    else:
        raise UsageError("expected nmt_pkl net_prototxt net_weights datadir filelist outdir layer, or nmt datadir "
                         f"[filelist] outdir layer; got {len(paths)} paths")
    what = tuple(dest for dest, _, _ in DO_FLAGS if getattr(args, "do_" + dest))
    if not what:
        raise UsageError("nothing to do: give at least one of " + ", ".join(flag for _, flag, _ in DO_FLAGS))
    return CropJob(choice, nmt, datadir, outdir, layer, what, filelist, idx_begin=args.idx_begin,
                   idx_end=args.idx_end, n_top=args.n_top, device=args.device, brave=args.brave,
                   layouts=layouts_from_args(args), precision=args.precision,
                   dictionaries=dictionaries_from_args(args))


def _main(argv: Optional[Sequence[str]]) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    run_crop_patches(job_from_args(args))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run crop_max_patches.py; returns the exit status (0 ok, 2 bad input, 1 other failure)."""
    return run_command(PROG, lambda: _main(argv), flags=FLAGS)


if __name__ == "__main__":
    sys.exit(main())
