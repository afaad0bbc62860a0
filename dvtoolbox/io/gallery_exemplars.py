"""A layer's natural exemplars for the gallery: crop_max_patches.py's ``outdir/<layer>`` folder, read as plain files.

The folder holds ``unit_%04d/`` folders (crop_max_patches' layout): ``maxim_%03d.png`` (the crop of rank k, 0 the
highest), ``deconv_%03d.png``, ``deconvnorm_%03d.png``, ``backprop_%03d.png``, ``backpropnorm_%03d.png`` and
``info.txt`` (``# is_conv val image_idx image_class [i j] filename``, one row per rank), and with
``--do-histogram`` the unit's activation histogram, ``histogram.txt`` (a ``#`` header line, then ``lower upper
count`` rows: the underflow from -inf, the bins, the overflow to inf) and ``histogram.png``. The layer is the folder's
name. A unit's ranks are its info.txt rows (values and image names known); without info.txt, the ranks of its
``maxim_*.png`` ... ``backpropnorm_*.png`` files (values unknown); other files are ignored. Nothing is unpickled;
bad files raise one-line ``UsageError`` naming ``exemplars`` (or the setting the caller names).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from dvtoolbox.errors import UsageError
from dvtoolbox.io.images import load_image_rgb

UNIT_DIR = re.compile(r"unit_(\d{4,})")
RANK_FILES = (("maxim", "maxim"), ("deconv", "deconv"), ("deconvnorm", "deconv norm"), ("backprop", "backprop"),
              ("backpropnorm", "backprop norm"))
"""(file prefix, link label) of a rank's images; ``maxim`` is the thumbnail."""
RANK_FILE = re.compile(r"(?:%s)_(\d{3,})\.png" % "|".join(prefix for prefix, _ in RANK_FILES))


@dataclass
class ExemplarRank:
    """One rank of a unit: value None when no info.txt gives it; files: file prefix -> path relative to the
    exemplars folder, for the files that exist; size: (width, height) of the maxim crop, None when it is missing."""

    rank: int
    value: Optional[float]
    image: str
    value_text: str = "?"
    files: Dict[str, str] = field(default_factory=dict)
    size: Optional[Tuple[int, int]] = None


@dataclass
class UnitHistogram:
    """A unit's histogram.txt: edges (B+1) increasing, counts (B+2) (underflow, B bins, overflow), header the
    text of its comment line (without '# '); files: 'txt' / 'png' -> path relative to the exemplars folder."""

    edges: List[float]
    counts: List[int]
    header: str
    files: Dict[str, str] = field(default_factory=dict)

    @property
    def under(self) -> int:
        return self.counts[0]

    @property
    def over(self) -> int:
        return self.counts[-1]


@dataclass
class ExemplarUnit:
    """One unit's exemplars in rank order (0 the highest), and its histogram (None without histogram.txt)."""

    unit: int
    ranks: List[ExemplarRank]
    histogram: Optional[UnitHistogram] = None


def read_exemplars(folder: str, setting: str = "exemplars") -> Tuple[str, Dict[int, ExemplarUnit]]:
    """(layer, {unit: ExemplarUnit}) of crop_max_patches' ``outdir/<layer>`` folder; UsageError when it is not one
    (naming ``setting``, the library name of the option that gave the folder). Files of a unit folder other than
    its rank images and info.txt are ignored."""
    if not os.path.isdir(folder):
        raise UsageError(f"{setting} folder {folder!r} does not exist or is not a folder", setting)
    layer = os.path.basename(os.path.normpath(os.path.abspath(folder)))
    units = {}
    for name in sorted(os.listdir(folder)):
        match = UNIT_DIR.fullmatch(name)
        if match and os.path.isdir(os.path.join(folder, name)):
            units[int(match.group(1))] = read_unit(folder, name, int(match.group(1)))
    if not units:
        raise UsageError(f"{setting} folder {folder!r} holds no unit_NNNN folder of crop_max_patches.py; give its "
                         "OUTDIR/<layer>", setting)
    return layer, units


def read_unit(folder: str, name: str, unit: int) -> ExemplarUnit:
    """The ranks of ``folder/name`` (a ``unit_%04d`` folder)."""
    unit_path = os.path.join(folder, name)
    info = os.path.join(unit_path, "info.txt")
    if os.path.isfile(info):
        rows = parse_unit_info(info)
    else:
        found = sorted({int(m.group(1)) for m in (RANK_FILE.fullmatch(f) for f in os.listdir(unit_path)) if m})
        rows = [(rank, None, "?", "") for rank in found]
    ranks = []
    for rank, value, value_text, image in rows:
        files = {prefix: f"{name}/{prefix}_{rank:03d}.png" for prefix, _ in RANK_FILES
                 if os.path.isfile(os.path.join(unit_path, f"{prefix}_{rank:03d}.png"))}
        size = None
        if "maxim" in files:
            img = load_image_rgb(os.path.join(folder, files["maxim"]))
            size = (img.shape[1], img.shape[0])
        ranks.append(ExemplarRank(rank=rank, value=value, image=image, value_text=value_text, files=files,
                                  size=size))
    histogram = None
    if os.path.isfile(os.path.join(unit_path, "histogram.txt")):
        histogram = parse_histogram_text(os.path.join(unit_path, "histogram.txt"))
        histogram.files = {kind: f"{name}/histogram.{kind}" for kind in ("txt", "png")
                           if os.path.isfile(os.path.join(unit_path, f"histogram.{kind}"))}
    return ExemplarUnit(unit=unit, ranks=ranks, histogram=histogram)


def parse_histogram_text(path: str) -> UnitHistogram:
    """A crop_max_patches histogram.txt: the '#' header line, then ``lower upper count`` rows, contiguous, from
    -inf to inf, with at least one bin between finite increasing edges."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not lines or not lines[0].startswith("# "):
        raise UsageError(f"{path} is not a crop_max_patches.py histogram.txt (no '# ' header line)")
    rows = []
    for number, line in enumerate(lines[1:], 2):
        try:
            lower, upper, count = line.split()
            rows.append((float(lower), float(upper), int(count)))
            if rows[-1][2] < 0 or not rows[-1][0] < rows[-1][1]:
                raise ValueError
        except ValueError:
            raise UsageError(f"{path} line {number} is not a histogram.txt row (lower upper count, lower < upper, "
                             "count >= 0)") from None
    edges = [r[1] for r in rows[:-1]]
    if (len(rows) < 3 or rows[0][0] != -math.inf or rows[-1][1] != math.inf
            or any(a[1] != b[0] for a, b in zip(rows, rows[1:])) or not all(map(math.isfinite, edges))):
        raise UsageError(f"{path} is not a crop_max_patches.py histogram.txt (its rows must run from -inf to inf "
                         "without gaps, with at least one bin between finite edges)")
    return UnitHistogram(edges=edges, counts=[r[2] for r in rows], header=lines[0][2:])


def parse_unit_info(path: str) -> List[Tuple[int, float, str, str]]:
    """(rank, value, its text, image file name) of each row of a crop_max_patches info.txt, the rows in rank order."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        try:
            is_conv = int(line.split(" ", 1)[0])
            fields = line.split(" ", 6 if is_conv else 4)
            value = float(fields[1])
            image = fields[-1]
            if is_conv not in (0, 1) or len(fields) != (7 if is_conv else 5):
                raise ValueError
        except (ValueError, IndexError):
            raise UsageError(f"{path} line {number} is not a crop_max_patches.py info.txt row "
                             "(is_conv val image_idx image_class [i j] filename)") from None
        rank = len(rows)
        rows.append((rank, value, fields[1], image))
    return rows
