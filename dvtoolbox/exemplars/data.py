"""The dataset find_max_acts streams: the image list, and (later in this module) its decoding.

``ImageList``: paths relative to ``root`` and one label each (-1 when the list gives none). An image's index in
it is the index every tracker result refers to; an image that cannot be read keeps its index.

- ``read_filelist(datadir, filelist)``: the original's ``datadir`` + ``filelist``, one ``relative/path label`` per
  line (a path alone is allowed: label -1); blank lines are skipped.
- ``scan_folder(root)``: every image file under ``root`` (recursive, sorted by relative path, by extension).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List

from dvtoolbox.errors import UsageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass
class ImageList:
    """paths: relative to root (or absolute); labels: one int per path, -1 when none; root: the folder."""

    paths: List[str]
    labels: List[int]
    root: str = ""
    description: dict = field(default_factory=dict)

    def __post_init__(self):
        if len(self.paths) != len(self.labels):
            raise ValueError(f"{len(self.paths)} paths but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.paths)

    def full_path(self, index: int) -> str:
        return os.path.join(self.root, self.paths[index])


def read_filelist(datadir: str, filelist: str) -> ImageList:
    """The original's filelist: ``path [label]`` per line, paths relative to ``datadir``. A line with more than two
    fields or a label that is not an integer is a one-line UsageError naming the file and the line."""
    try:
        with open(filelist, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the filelist {filelist}: {getattr(exc, 'strerror', None) or exc}",
                         "filelist") from None
    paths, labels = [], []
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) > 2:
            raise UsageError(f"{filelist} line {number}: expected 'path [label]', got {len(fields)} fields",
                             "filelist")
        try:
            label = int(fields[1]) if len(fields) == 2 else -1
        except ValueError:
            raise UsageError(f"{filelist} line {number}: the label {fields[1][:40]!r} is not an integer",
                             "filelist") from None
        paths.append(fields[0])
        labels.append(label)
    if not paths:
        raise UsageError(f"the filelist {filelist} names no image", "filelist")
    return ImageList(paths, labels, datadir, {"kind": "filelist", "datadir": datadir, "filelist": filelist})


def scan_folder(root: str) -> ImageList:
    """Every file under ``root`` whose extension is an image's (case-insensitive), sorted by relative path."""
    if not os.path.isdir(root):
        raise UsageError(f"datadir {root} is not a folder", "datadir")
    found = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in files:
            if name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(os.path.relpath(os.path.join(folder, name), root))
    found.sort()
    if not found:
        raise UsageError(f"datadir {root} holds no image ({', '.join(IMAGE_EXTENSIONS)})", "datadir")
    return ImageList(found, [-1] * len(found), root, {"kind": "folder", "datadir": root})
