"""``python -m dvtoolbox.cli.gallery FOLDER [FOLDER ...]``: (re)build each results folder's index.html and,
with ``--exemplars``, show each unit's natural exemplars (crop_max_patches.py's crops) in its cell; with
``--gui-dir``, write the folders' images in the layout the original toolbox's GUI reads.

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
from dvtoolbox.io.gallery import load_exemplars, scan_folder, write_gallery
from dvtoolbox.io.gui_layout import IMAGE_CHOICES, write_gui_layout

FLAGS = {"image": "--gui-image", "layer": "--gui-layer", "layer_units": "--gui-layer-units", "tile": "--gui-tile"}
PROG = "python -m dvtoolbox.cli.gallery"


def get_parser() -> argparse.ArgumentParser:
    parser = new_parser(PROG, "Build index.html (a sortable grid of every unit, read from the *info.txt files) in "
                              "each optimize_image.py results folder; optionally write the images in the original "
                              "toolbox GUI's unit_jpg_dir layout (regularized_opt/<layer>/<layer>_NNNN_montage.jpg).")
    parser.add_argument("folders", nargs="+", metavar="FOLDER", help="results folder(s)")
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
    gui.add_argument("--gui-layer", default=None, help="Layer to lay out when a folder holds several.")
    gui.add_argument("--gui-image", default="best_X", choices=IMAGE_CHOICES, help="Which image of each unit.")
    gui.add_argument("--gui-tile", type=int, default=None,
                     help="Image size in pixels inside the montage. (default: the images' own size)")
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
    if args.exemplars is not None:  # every folder checked against the exemplars before any page is written
        for folder in args.folders:
            load_exemplars(folder, args.exemplars, scan_folder(folder))
    for folder in args.folders:
        print(write_gallery(folder, brave=args.brave, exemplars=args.exemplars))
    if args.gui_dir is not None:
        paths = write_gui_layout(args.folders, args.gui_dir, layer=args.gui_layer, image=args.gui_image,
                                 tile=args.gui_tile, layer_units=args.gui_layer_units, brave=args.brave)
        print(f"GUI layout: {len(paths)} files under {args.gui_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
