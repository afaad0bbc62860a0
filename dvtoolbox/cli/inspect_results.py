"""``python -m dvtoolbox.cli.inspect_results FILE.pkl [FILE.pkl ...]``: print what an info.pkl / info_big.pkl holds.

Reads the original toolbox's Python 2 pickles and dvtoolbox's own (dvtoolbox.optimize.pickles.load_info) and prints,
for each file, exactly the text the run's info.txt holds. With ``--save-images DIR`` it also writes the images an
info_big.pkl holds (x0, best_xx, last_xx, majority_xx: (3, H, W), mean-subtracted, the model's channel order) as
``DIR/<file stem>_<field>.npy``. Every file is read and every output path checked before anything is printed or
written. ``get_parser()`` returns the parser and ``main(argv)`` does the work; bad input prints one line and exits
with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional, Sequence, Tuple

import numpy as np

from dvtoolbox.cli.arguments import new_parser
from dvtoolbox.cli.exit_status import run_command
from dvtoolbox.errors import UsageError
from dvtoolbox.io.atomic import atomic_open
from dvtoolbox.optimize.pickles import load_info
from dvtoolbox.optimize.writers import info_text

PROG = "python -m dvtoolbox.cli.inspect_results"
IMAGE_FIELDS = ("x0", "best_xx", "last_xx", "majority_xx")


def get_parser() -> argparse.ArgumentParser:
    parser = new_parser(PROG, "Print what an optimize_image.py info.pkl or info_big.pkl holds (the original "
                              "toolbox's Python 2 pickles or dvtoolbox's), as the run's info.txt shows it. With "
                              "several files, each is preceded by a line '==> FILE <=='. Only FindParams, FindResults "
                              "and numpy objects are unpickled; any other name in a file is refused.")
    parser.add_argument("files", nargs="+", metavar="FILE.pkl", help="info.pkl or info_big.pkl file(s)")
    parser.add_argument("--save-images", default=None, metavar="DIR",
                        help="Also write each info_big.pkl's arrays (%s, those present) as DIR/<file stem>_<field>.npy "
                             "(an info.pkl holds only trimmed descriptions: nothing is written for it). "
                             "(default: write nothing)" % ", ".join(IMAGE_FIELDS))
    parser.add_argument("--brave", action="store_true",
                        help="Allow overwriting existing .npy files. (default: refuse, before writing anything)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Returns the exit status: 0 ok, 2 bad input, 1 a file that cannot be written."""
    args = get_parser().parse_args(argv)
    return run_command(PROG, lambda: _inspect(args))


def _inspect(args: argparse.Namespace) -> int:
    loaded = [(path,) + load_info(path) for path in args.files]
    texts = [_shown(path, params, results) for path, params, results in loaded]
    images: List[Tuple[str, np.ndarray]] = []
    if args.save_images is not None:
        images = _planned_images(loaded, args.save_images, args.brave)
    for (path, _, _), text in zip(loaded, texts):
        if len(loaded) > 1:
            sys.stdout.write(f"==> {path} <==\n")
        sys.stdout.write(text)
    if images:
        os.makedirs(args.save_images, exist_ok=True)
    for target, array in images:
        with atomic_open(target, "wb") as handle:
            np.save(handle, array, allow_pickle=False)
        print(f"wrote {target}", file=sys.stderr)
    return 0


def _shown(path: str, params, results) -> str:
    """The info.txt text of a loaded pair. The classes are the allowed ones, but what a foreign file put in them
    (an array of one value, which the original's layout cannot describe; an object where a list belongs) can fail
    to print in many ways: each is a one-line UsageError naming the file."""
    try:
        return info_text(params, results)
    except Exception as exc:  # the values of a file that dvtoolbox did not write: any failure is the file's
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise UsageError(f"{path}: cannot show what it holds as info.txt ({detail})") from None


def _planned_images(loaded, folder: str, brave: bool) -> List[Tuple[str, np.ndarray]]:
    """(target path, array) for every array to save; refuses, before any writing, to overwrite without brave."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UsageError(f"--save-images {folder} exists and is not a folder")
    parent = _existing_parent(folder)
    if not os.path.isdir(parent):
        raise UsageError(f"--save-images {folder}: {parent} is not a folder")
    planned = []
    for path, _, results in loaded:
        stem = os.path.splitext(os.path.basename(path))[0]
        for name in IMAGE_FIELDS:
            value = results.__dict__.get(name)
            if isinstance(value, np.ndarray):
                planned.append((os.path.join(folder, f"{stem}_{name}.npy"), value))
    targets = [target for target, _ in planned]
    repeated = sorted({target for target in targets if targets.count(target) > 1})
    if repeated:
        raise UsageError(f"two input files would both write {repeated[0]}: their names must differ "
                         "(copy one under another name)")
    if not brave:
        existing = [target for target in targets if os.path.exists(target)]
        if existing:
            raise UsageError(f"cowardly refusing to overwrite {existing[0]} (and {len(existing) - 1} more); "
                             "use --brave to allow it, or another --save-images folder")
    return planned


def _existing_parent(folder: str) -> str:
    """The nearest path above ``folder`` (or itself) that exists."""
    path = os.path.abspath(folder)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


if __name__ == "__main__":
    raise SystemExit(main())
