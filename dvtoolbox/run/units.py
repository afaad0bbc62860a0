"""Which units a run pushes: the original's single ``--push-channel``, or a list, a range or a whole layer (also
visualize.py's ``--units``).

Text forms: ``130`` (one unit, exactly the original), ``1,130,554`` (a list), ``0:1000`` (a Python-style range,
end excluded; ``0:1000:10`` with a step), ``all`` (every channel of the push layer). Lists may mix the forms:
``0:10,130,500:510``. Resolution against the layer's channel count happens once the model is built.
"""

from __future__ import annotations

import re
from typing import List, Sequence, Union

from dvtoolbox.errors import UsageError

UnitSpec = Union[int, str]


def parse_channels(spec: UnitSpec, n_channels: int, setting: str = "push_channel", noun: str = "channels") -> List[int]:
    """The channels ``spec`` names, in order, without repeats; every one must lie in 0..n_channels-1. ``setting``
    names the setting in messages, ``noun`` what the layer has."""
    if isinstance(spec, int) and not isinstance(spec, bool):
        channels = [spec]
    elif isinstance(spec, str) and spec.strip() == "all":
        channels = list(range(n_channels))
    elif isinstance(spec, str):
        channels = []
        for part in spec.split(","):
            channels += _parse_part(part.strip(), spec, setting)
    else:
        raise UsageError(f"{setting} must be an integer, a list (1,130,554), a range (0:1000) or all; "
                         f"got {spec!r}", setting)
    channels = list(dict.fromkeys(channels))
    if not channels:
        raise UsageError(f"{setting} {spec!r} names no unit; e.g. 130, 1,130,554, 0:1000 or all", setting)
    bad = [c for c in channels if not 0 <= c < n_channels]
    if bad:
        raise UsageError(f"{setting} {spec!r}: unit {bad[0]} is out of range; the layer has {n_channels} "
                         f"{noun} (0..{n_channels - 1})", setting)
    return channels


def _parse_part(part: str, whole: str, setting: str) -> List[int]:
    if re.fullmatch(r"-?\d+", part):
        return [int(part)]
    match = re.fullmatch(r"(\d+):(\d+)(?::(\d+))?", part)
    if match is None:
        raise UsageError(f"{setting} {whole!r}: cannot read {part!r}; use e.g. 130, 1,130,554, 0:1000, "
                         "0:1000:10 or all", setting)
    start, stop, step = int(match.group(1)), int(match.group(2)), int(match.group(3) or 1)
    if step < 1:
        raise UsageError(f"{setting} {whole!r}: the step of {part!r} must be >= 1", setting)
    return list(range(start, stop, step))


def is_single_unit(spec: UnitSpec) -> bool:
    """True when spec is the original's plain single channel."""
    return isinstance(spec, int) or (isinstance(spec, str) and re.fullmatch(r"\s*\d+\s*", spec) is not None)


def batches(items: Sequence, size: int) -> List[Sequence]:
    """Consecutive groups of at most ``size`` items."""
    if size < 1:
        raise UsageError(f"batch_size must be >= 1, got {size}", "batch_size")
    return [items[i:i + size] for i in range(0, len(items), size)]
