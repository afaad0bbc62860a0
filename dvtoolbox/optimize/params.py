"""FindParams: what to optimize and how, with the original's field names, defaults and printed layout.

The fields are those of the original ``optimize/gradient_optimizer.py`` FindParams; the defaults are those of the
original command line (``optimize_image.py --help``), with their Python types: argparse left the original's
defaults ``0`` and ``1`` as ints, so an unset ``decay`` prints ``0`` in info.txt where a given ``--decay 0`` prints
``0.0``. Values are validated once, here: a bad value raises ``UsageError`` with one line that says what is wrong
and what is valid.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Dict, Tuple

from dvtoolbox.errors import UsageError
from dvtoolbox.optimize.lr_policies import validate_lr_params
from dvtoolbox.optimize.py2_text import py2_str
from dvtoolbox.optimize.start import START_AT_CHOICES

PERCENTILE_FIELDS = ("small_val_percentile", "small_norm_percentile", "px_benefit_percentile",
                     "px_abs_benefit_percentile")


@dataclass(frozen=True)
class FindParams:
    """One unit to push and the regularised gradient ascent that pushes it.

    push_unit is (push_channel,) + push_spatial; push_spatial is (0, 0) for a layer without space.
    start_at is one of START_AT_CHOICES or the path of a .npy file holding x0 (3, H, W).
    """

    rand_seed: int = 0
    start_at: str = "mean_plus_rand"
    push_layer: str = "fc8"
    push_channel: int = 130
    push_spatial: Tuple[int, int] = (0, 0)
    push_dir: float = 1
    decay: float = 0
    blur_radius: float = 0
    blur_every: int = 0
    small_val_percentile: float = 0
    small_norm_percentile: float = 0
    px_benefit_percentile: float = 0
    px_abs_benefit_percentile: float = 0
    lr_policy: str = "constant"
    lr_params: Dict[str, float] = field(default_factory=lambda: {"lr": 1})
    max_iter: int = 500
    push_unit: Tuple[int, int, int] = field(init=False)

    def __post_init__(self):
        _check_int("rand_seed", self.rand_seed, 0, 2**32 - 1)
        if self.start_at not in START_AT_CHOICES and not (
                str(self.start_at).endswith(".npy") and os.path.isfile(self.start_at)):
            raise UsageError(f"start_at must be one of {', '.join(START_AT_CHOICES)} or an existing .npy file "
                             f"holding x0, got {self.start_at!r}")
        if not isinstance(self.push_layer, str) or not self.push_layer:
            raise UsageError(f"push_layer must be a layer name, got {self.push_layer!r}")
        _check_int("push_channel", self.push_channel, 0)
        spatial = self.push_spatial
        if not (isinstance(spatial, tuple) and len(spatial) == 2):
            raise UsageError(f"push_spatial must be None or a tuple (y, x) of two integers, got {spatial!r}")
        for value in spatial:
            _check_int("push_spatial", value, 0)
        _check_real("push_dir", self.push_dir)
        if self.push_dir == 0:
            raise UsageError("push_dir must be non-zero (1 maximises, -1 minimises), got 0")
        _check_real("decay", self.decay, 0, 1)
        _check_real("blur_radius", self.blur_radius, 0)
        _check_int("blur_every", self.blur_every, 0)
        for name in PERCENTILE_FIELDS:
            value = getattr(self, name)
            _check_real(name, value, 0)
            if value >= 100:
                raise UsageError(f"{name} must be in [0, 100) (0 disables it), got {value!r}")
        validate_lr_params(self.lr_policy, self.lr_params)
        _check_int("max_iter", self.max_iter, 1)
        object.__setattr__(self, "push_unit", (self.push_channel,) + tuple(spatial))

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "FindParams":
        """Build from a dict of field names; unknown names are rejected (as the original did)."""
        known = {f.name for f in fields(cls) if f.init}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"unknown FindParams field(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        return cls(**values)

    def with_unit(self, channel: int, spatial: Tuple[int, int] = None) -> "FindParams":
        """The same settings pushing another channel (and optionally another spatial position)."""
        return replace(self, push_channel=channel, push_spatial=self.push_spatial if spatial is None else spatial)

    def schedule_key(self) -> Tuple:
        """Everything that must be equal for two params to share one batched loop."""
        values = asdict(self)
        for name in ("rand_seed", "start_at", "push_channel", "push_spatial", "push_unit"):
            values.pop(name)
        return tuple(sorted((k, repr(v)) for k, v in values.items()))

    def __str__(self) -> str:
        """The original's printed layout: sorted names, values as Python 2's ``str`` printed them."""
        lines = ["FindParams:"]
        for name in sorted(f.name for f in fields(self)):
            lines.append("%30s: %s" % (name, py2_str(getattr(self, name))))
        return "\n".join(lines) + "\n"


def _check_int(name: str, value, low: int = None, high: int = None) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UsageError(f"{name} must be an integer, got {value!r}")
    _check_range(name, value, low, high)


def _check_real(name: str, value, low: float = None, high: float = None) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value:
        raise UsageError(f"{name} must be a number, got {value!r}")
    _check_range(name, value, low, high)


def _check_range(name, value, low, high) -> None:
    if low is not None and value < low:
        raise UsageError(f"{name} must be >= {low}, got {value!r}")
    if high is not None and value > high:
        raise UsageError(f"{name} must be <= {high}, got {value!r}")

