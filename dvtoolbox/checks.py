"""The checks every number a user gives goes through, and the largest values a run takes.

Each check raises ``UsageError`` with one line that names the setting (by its library name, which a command line
turns into its flag) and its valid range. A number is finite: NaN and the infinities (``nan``, ``inf``, ``1e400``
in a flag, ``.nan`` in YAML) are refused wherever a number is read. The limits keep a mistyped number from becoming
a traceback deep in numpy or torch (an allocation of petabytes, an integer C cannot hold):

- ``MAX_IMAGE_SIDE``: an image side in pixels (``data_size``, ``size``), and the largest blur radius;
- ``MAX_ITERATIONS``: iterations or steps of one run (the per-iteration statistics of more would fill gigabytes);
- ``MAX_IMAGES``: images optimised together in visualize (``batch``, ``views``);
- ``MAX_SEED``: the largest seed a ``torch.Generator`` takes.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional, Sequence, Tuple

from dvtoolbox.errors import UsageError

MAX_IMAGE_SIDE = 8192
MAX_ITERATIONS = 10**8
MAX_IMAGES = 4096
MAX_SEED = 2**64 - 1


def is_real(value) -> bool:
    """True for int- and float-like numbers (numpy scalars included), False for bool and everything else."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_int(value) -> bool:
    """True for integers (numpy's included), False for bool and everything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(name: str, value, low: Optional[int] = None, high: Optional[int] = None) -> None:
    """UsageError unless ``value`` is an integer (not a bool) in [low, high]."""
    if not is_int(value):
        raise UsageError(f"{name} must be an integer{_range_text(low, high)}, got {value!r}", name)
    _check_range(name, "an integer", value, low, high)


def check_real(name: str, value, low: Optional[float] = None, high: Optional[float] = None) -> None:
    """UsageError unless ``value`` is a finite real number (not a bool, NaN or infinite) in [low, high]."""
    if not is_real(value) or not math.isfinite(value):
        raise UsageError(f"{name} must be a finite number{_range_text(low, high)}, got {value!r}", name)
    _check_range(name, "a finite number", value, low, high)


def check_reals(name: str, values, length: int) -> Tuple[float, ...]:
    """``values`` as a tuple of ``length`` floats; UsageError unless it is a sequence of that many finite numbers."""
    if (isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) != length
            or not all(is_real(v) and math.isfinite(v) for v in values)):
        raise UsageError(f"{name} must be {length} finite numbers, got {values!r}", name)
    return tuple(float(v) for v in values)


def check_sequence(name: str, values, length: int) -> Tuple:
    """``values`` as a tuple; UsageError unless it is a tuple or list of ``length`` items."""
    if not isinstance(values, (tuple, list)) or len(values) != length:
        raise UsageError(f"{name} must be {length} values, got {values!r}", name)
    return tuple(values)


def _range_text(low, high) -> str:
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None:
        return f" >= {low}"
    return f" <= {high}" if high is not None else ""


def _check_range(name, kind, value, low, high) -> None:
    if (low is not None and value < low) or (high is not None and value > high):
        raise UsageError(f"{name} must be {kind}{_range_text(low, high)}, got {value!r}", name)
