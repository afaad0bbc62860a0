"""The settings of DVT's post-step regularizers, declared once: ``Regularizers``, with the original FindParams'
field names, its command line's defaults (0: off, as ints, which is how the original's info.txt prints them) and
one validation. ``FindParams`` (the DVT loop) and ``FeatureViz.visualize(regularizers=...)`` (the parameterised loop)
both take them from here, and both command lines build their flags from these fields.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Tuple

from dvtoolbox.checks import MAX_IMAGE_SIDE, check_int, check_real
from dvtoolbox.errors import UsageError

PERCENTILE_FIELDS = ("small_val_percentile", "small_norm_percentile", "px_benefit_percentile",
                     "px_abs_benefit_percentile")


@dataclass(frozen=True)
class Regularizers:
    """What the original does to the image after each step (``operations.regularize``), all off by default.

    decay: L2 decay per step, in [0, 1]; blur_radius (pixels, in [0, 8192]) and blur_every (steps, 0 = never): a
    Gaussian blur at every step ``ii`` with ``ii % blur_every == 0``; the four percentiles, each in [0, 100) (0 =
    off): zero small values, small-norm pixels, small-benefit pixels, small-|benefit| pixels. All finite numbers.
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
    ``REGULARIZER_FIELDS`` attributes) holds valid regularizer settings: finite numbers in their ranges."""
    check_real("decay", values.decay, 0, 1)
    check_real("blur_radius", values.blur_radius, 0, MAX_IMAGE_SIDE)
    check_int("blur_every", values.blur_every, 0)
    for name in PERCENTILE_FIELDS:
        value = getattr(values, name)
        check_real(name, value, 0)
        if value >= 100:
            raise UsageError(f"{name} must be in [0, 100) (0 disables it), got {value!r}", name)
