"""FindParams: what to optimize and how, with the original's field names, defaults and printed layout.

The fields are those of the original ``optimize/gradient_optimizer.py`` FindParams; the defaults are those of the
original command line (``optimize_image.py --help``), with their Python types: argparse left the original's
defaults ``0`` and ``1`` as ints, so an unset ``decay`` prints ``0`` in info.txt where a given ``--decay 0`` prints
``0.0``. Values are validated once, here: a bad value raises ``UsageError`` with one line that says what is wrong
and what is valid.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Dict, Tuple

from dvtoolbox.errors import UsageError
from dvtoolbox.optimize.py2_text import py2_str
from dvtoolbox.optimize.start import START_AT_CHOICES
from dvtoolbox.regularizers.lr_policies import validate_lr_params
from dvtoolbox.checks import MAX_ITERATIONS, check_int, check_real
from dvtoolbox.regularizers.settings import REGULARIZER_FIELDS, Regularizers, check_regularizers


@dataclass(frozen=True)
class _StartAndUnit:
    """Where to start and which unit to push (the first fields of FindParams)."""

    rand_seed: int = 0
    start_at: str = "mean_plus_rand"
    push_layer: str = "fc8"
    push_channel: int = 130
    push_spatial: Tuple[int, int] = (0, 0)
    push_dir: float = 1


@dataclass(frozen=True)
class _Schedule:
    """How the step size is chosen and for how long (the last fields of FindParams)."""

    lr_policy: str = "constant"
    lr_params: Dict[str, float] = field(default_factory=lambda: {"lr": 1})
    max_iter: int = 500


# Dataclass fields come in reverse order of the bases: start and unit, the regularizers, the schedule, push_unit,
# the original's order (kept in asdict() and in the pickles' attribute order).
@dataclass(frozen=True)
class FindParams(_Schedule, Regularizers, _StartAndUnit):
    """One unit to push and the regularised gradient ascent that pushes it.

    push_unit is (push_channel,) + push_spatial; push_spatial is (0, 0) for a layer without space.
    start_at is one of START_AT_CHOICES or the path of a .npy file holding x0 (3, H, W). The seven regularizer
    fields (decay, blur_radius, blur_every, the four percentiles) are ``Regularizers``'.
    """

    push_unit: Tuple[int, int, int] = field(init=False)

    def __post_init__(self):
        check_int("rand_seed", self.rand_seed, 0, 2**32 - 1)
        if self.start_at not in START_AT_CHOICES and not (
                str(self.start_at).endswith(".npy") and os.path.isfile(self.start_at)):
            raise UsageError(f"start_at must be one of {', '.join(START_AT_CHOICES)} or an existing .npy file "
                             f"holding x0, got {self.start_at!r}", "start_at")
        if not isinstance(self.push_layer, str) or not self.push_layer:
            raise UsageError(f"push_layer must be a layer name, got {self.push_layer!r}", "push_layer")
        check_int("push_channel", self.push_channel, 0)
        spatial = self.push_spatial
        if not (isinstance(spatial, tuple) and len(spatial) == 2):
            raise UsageError(f"push_spatial must be None or a tuple (y, x) of two integers, got {spatial!r}",
                             "push_spatial")
        for value in spatial:
            check_int("push_spatial", value, 0)
        check_real("push_dir", self.push_dir)
        if self.push_dir == 0:
            raise UsageError("push_dir must be non-zero (1 maximises, -1 minimises), got 0", "push_dir")
        check_regularizers(self)
        validate_lr_params(self.lr_policy, self.lr_params)
        check_int("max_iter", self.max_iter, 1, MAX_ITERATIONS)
        object.__setattr__(self, "push_unit", (self.push_channel,) + tuple(spatial))

    @property
    def regularizers(self) -> Regularizers:
        """The seven regularizer settings alone."""
        return Regularizers(**{name: getattr(self, name) for name in REGULARIZER_FIELDS})

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
