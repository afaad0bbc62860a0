"""The settings of DVT's post-step regularizers, declared once: ``Regularizers``, with the original FindParams'
field names, its command line's defaults (0: off, as ints, which is how the original's info.txt prints them) and
one validation. ``FindParams`` (the DVT loop) and ``FeatureViz.visualize(regularizers=...)`` (the parameterised loop)
both take them from here, and both command lines build their flags from these fields.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, fields
from typing import Any, Tuple

from dvtoolbox.errors import UsageError

PERCENTILE_FIELDS = ("small_val_percentile", "small_norm_percentile", "px_benefit_percentile",
                     "px_abs_benefit_percentile")


@dataclass(frozen=True)
class Regularizers:
    """What the original does to the image after each step (``operations.regularize``), all off by default.

    decay: L2 decay per step, in [0, 1]; blur_radius (pixels, >= 0) and blur_every (steps, 0 = never): a Gaussian
    blur at every step ``ii`` with ``ii % blur_every == 0``; the four percentiles, each in [0, 100) (0 = off): zero
    small values, small-norm pixels, small-benefit pixels, small-|benefit| pixels.
    """

    decay: float = 0
    blur_radius: float = 0
    blur_every: int = 0
    small_val_percentile: float = 0
    small_norm_percentile: float = 0
    px_benefit_percentile: float = 0
    px_abs_benefit_percentile: float = 0

    def __post_init__(self):
        check_regularizers(self)

    @property
    def active(self) -> bool:
        """False when every operation is off."""
        return (self.decay > 0 or (self.blur_radius > 0 and self.blur_every > 0)
                or any(getattr(self, name) > 0 for name in PERCENTILE_FIELDS))


REGULARIZER_FIELDS: Tuple[str, ...] = tuple(f.name for f in fields(Regularizers))


def check_regularizers(values: Any) -> None:
    """UsageError (one line, naming the field and its valid range) unless ``values`` (anything with the
    ``REGULARIZER_FIELDS`` attributes) holds valid regularizer settings."""
    check_real("decay", values.decay, 0, 1)
    check_real("blur_radius", values.blur_radius, 0)
    check_int("blur_every", values.blur_every, 0)
    for name in PERCENTILE_FIELDS:
        value = getattr(values, name)
        check_real(name, value, 0)
        if value >= 100:
            raise UsageError(f"{name} must be in [0, 100) (0 disables it), got {value!r}")


def check_int(name: str, value, low: int = None, high: int = None) -> None:
    """UsageError unless ``value`` is an integer (not a bool) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UsageError(f"{name} must be an integer, got {value!r}")
    _check_range(name, value, low, high)


def check_real(name: str, value, low: float = None, high: float = None) -> None:
    """UsageError unless ``value`` is a real number (not a bool, not NaN) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value:
        raise UsageError(f"{name} must be a number, got {value!r}")
    _check_range(name, value, low, high)


def _check_range(name, value, low, high) -> None:
    if low is not None and value < low:
        raise UsageError(f"{name} must be >= {low}, got {value!r}")
    if high is not None and value > high:
        raise UsageError(f"{name} must be <= {high}, got {value!r}")
