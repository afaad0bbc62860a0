"""Class names shipped with dvtoolbox (package data under dvtoolbox/data/)."""

from __future__ import annotations

import importlib.resources
from typing import Tuple


def imagenet_labels() -> Tuple[str, ...]:
    """The 1000 ILSVRC2012 class names, index = class, from dvtoolbox/data/ilsvrc_2012_labels.txt."""
    text = (importlib.resources.files("dvtoolbox") / "data" / "ilsvrc_2012_labels.txt").read_text("utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())
