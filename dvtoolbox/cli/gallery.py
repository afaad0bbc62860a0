"""``python -m dvtoolbox.cli.gallery [FOLDER ...]``: (re)build each results folder's index.html and,
with ``--exemplars``, show each unit's natural exemplars (crop_max_patches.py's crops) in its cell; with
``--gui-dir``, write the folders' images, and with ``--gui-exemplars`` the crops, in the layout the original
toolbox's GUI reads (``--gui-dir --gui-exemplars`` alone, without a FOLDER, writes only the crops' montages).

``get_parser()`` returns the parser and ``main(argv)`` does the work; bad input prints one line and exits with
status 2 (dvtoolbox.errors.UsageError).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from dvtoolbox.cli.arguments import new_parser
from dvtoolbox.cli.exit_status import run_command
from dvtoolbox.errors import UsageError
from dvtoolbox.io.gallery import load_exemplars, scan_folder, write_gallery
from dvtoolbox.io.gui_layout import IMAGE_CHOICES, plan_gui_layout, write_gui_plan

FLAGS = {"image": "--gui-image", "layer": "--gui-layer", "layer_units": "--gui-layer-units", "tile": "--gui-tile",
         "crops": "--gui-exemplars"}
PROG = "python -m dvtoolbox.cli.gallery"


def get_parser() -> argparse.ArgumentParser:
    parser = new_parser(PROG, "Build index.html (a sortable grid of every unit, read from the *info.txt files) in "
                              "each optimize_image.py results folder; optionally write the images in the original "
                              "toolbox GUI's unit_jpg_dir layout (regularized_opt/<layer>/<layer>_NNNN_montage.jpg, "
                              "and max_im/, max_deconv/ from crop_max_patches.py's crops).")
    parser.add_argument("folders", nargs="*", metavar="FOLDER",
                        help="results folder(s); none when only --gui-dir with --gui-exemplars is wanted")
    parser.add_argument("--brave", action="store_true",
                        help="Allow replacing an index.html that dvtoolbox did not write, and GUI files.")
    parser.add_argument("--exemplars", default=None, metavar="OUTDIR/LAYER",
                        help="crop_max_patches.py's folder of one layer (OUTDIR/<layer>, holding unit_NNNN/): each "
                             "cell of that layer also shows its unit's top crops (maxim_NNN.png) in rank order with "
                             "their values, and links to their deconv/backprop images; units with exemplars but no "
                             "synthetic image get a cell too. The layer must be one of the results'. See "
                             "doc/exemplars.md.")
    gui = parser.add_argument_group("The original GUI's layout (--gui-dir); see doc/whole-layers.md")
    gui.add_argument("--gui-dir", default=None, metavar="DIR",
                     help="Write the montages under DIR (use DIR as the GUI's caffevis_unit_jpg_dir). One FOLDER "
                          "fills the quadrant the GUI shows; four FOLDERs (Table 1's rows 1-4) fill all four.")
    gui.add_argument("--gui-exemplars", default=None, metavar="OUTDIR/LAYER",
                     help="crop_max_patches.py's folder of one layer (OUTDIR/<layer>, holding unit_NNNN/): also "
                          "write each unit's top 9 crops (maxim_NNN.png) as DIR/max_im/<layer>/<layer>_NNNN.jpg "
                          "and its deconv images (deconv_NNN.png) as DIR/max_deconv/<layer>/<layer>_NNNN.jpg, the "
                          "GUI's panes below the synthetic images: 3x3 in rank order, 1 px padding. Its layer must "
                          "be the FOLDERs' (--gui-layer defaults to it).")
    gui.add_argument("--gui-layer", default=None, help="Layer to lay out when a folder holds several.")
    gui.add_argument("--gui-image", default="best_X", choices=IMAGE_CHOICES, help="Which image of each unit.")
    gui.add_argument("--gui-tile", type=int, default=None,
                     help="Image size in pixels inside the montages. (default: the images' own size, the synthetic "
                          "images' and the crops' each)")
    gui.add_argument("--gui-layer-units", type=int, default=None, metavar="N",
                     help="The layer's number of units: also write whole_layer.jpg (the GUI's pattern mode). "
                          "(default: not written)")
    parser.add_argument("-v", "--verbose", action="store_true", help="Log what is written.")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Returns the exit status: 0 ok, 2 bad input, 1 other failure."""
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    return run_command(PROG, lambda: _write(args), flags=FLAGS)


def _write(args: argparse.Namespace) -> int:
    _check_flags(args)
    if args.exemplars is not None:  # every folder checked against the exemplars before any page is written
        for folder in args.folders:
            load_exemplars(folder, args.exemplars, scan_folder(folder))
    plan = None
    if args.gui_dir is not None:  # the whole GUI layout checked before any page is written
        plan = plan_gui_layout(args.folders, args.gui_dir, layer=args.gui_layer, image=args.gui_image,
                               tile=args.gui_tile, layer_units=args.gui_layer_units, brave=args.brave,
                               crops=args.gui_exemplars)
    for folder in args.folders:
        print(write_gallery(folder, brave=args.brave, exemplars=args.exemplars))
    if plan is not None:
        write_gui_plan(plan)
        print(f"GUI layout: {len(plan.paths)} files under {args.gui_dir}")
    return 0


def _check_flags(args: argparse.Namespace) -> None:
    """The combinations of flags that mean something."""
    if args.gui_exemplars is not None and args.gui_dir is None:
        raise UsageError("--gui-exemplars writes into the GUI layout: give --gui-dir DIR too")
    if not args.folders and args.gui_exemplars is None:
        raise UsageError("give at least one results FOLDER, or --gui-dir DIR with --gui-exemplars OUTDIR/LAYER")
    if not args.folders and args.exemplars is not None:
        raise UsageError("--exemplars shows crops in the results' index.html: give the results FOLDER(s) too "
                         "(--gui-exemplars writes them for the GUI without results)")


if __name__ == "__main__":
    sys.exit(main())
