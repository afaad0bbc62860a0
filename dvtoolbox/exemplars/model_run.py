"""The model both exemplar commands run, and what their precision modes promise.

find_max_acts and crop_max_patches run in two processes, and crop_max_patches must see the network that found the
maxima. A network with random weights (``--model-weights none``, a factory that initialises its own layers, a Caffe
net without a caffemodel) draws them from torch's global RNG, so ``open_exemplar_run`` builds the model with torch
seeded with ``WEIGHTS_SEED`` inside a forked RNG: the same random network in both commands, and the caller's RNG
state untouched.

Precision: find_max_acts records its ``precision`` (float32, tf32, bf16) in the tracker file; crop_max_patches runs
its forward and backward passes in the same mode by default. A recorded value is "reproduced" when the unit's value
in crop_max_patches' forward pass is within ``0.1 + rtol * |the unit's top value|`` of it (``value_tolerance``): the
original's 0.1 in float32, widened by the measured deviation of bf16 (doc/exemplars.md, "Model families and
precision").
"""

from __future__ import annotations

from typing import Optional

import torch

from dvtoolbox.device import Execution
from dvtoolbox.run.context import ModelChoice, RunContext, open_run

WEIGHTS_SEED = 0
ABSOLUTE_TOLERANCE = 0.1  # the original's check (crop_max_patches printed a value off by more than 0.1)
RELATIVE_TOLERANCE = {"float32": 0.0, "tf32": 0.05, "bf16": 0.25}
"""Per precision, the part of a unit's top value by which a reproduced value may differ. bf16: find_max_acts' bf16
values differ from float32's by up to 17 % of the unit's top value (EfficientNet-Lite0, 12 photographs,
benchmarks/precision_find_max_acts.py); tf32 (CUDA only) keeps 3 more mantissa bits than bf16 and is not measured."""


def open_exemplar_run(choice: ModelChoice, device: Optional[str], precision: str, brave: bool,
                      local_rank: Optional[int] = None) -> RunContext:
    """``run.context.open_run`` with the eager engine in ``precision``, the model built with torch seeded with
    WEIGHTS_SEED in a forked RNG (see the module docstring)."""
    execution = Execution("eager", precision)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(WEIGHTS_SEED)
        return open_run(choice, device, execution, brave, local_rank=local_rank)


def value_rtol(recorded_precision: str, precision: str) -> float:
    """The relative part of the tolerance when the values were recorded in one precision and are reproduced in
    another (the looser of the two)."""
    return max(RELATIVE_TOLERANCE.get(recorded_precision, 0.0), RELATIVE_TOLERANCE.get(precision, 0.0))


def value_tolerance(top_value: float, rtol: float) -> float:
    """How far a reproduced value may be from the recorded one, for a unit whose top value is ``top_value``."""
    return ABSOLUTE_TOLERANCE + rtol * abs(top_value)


def autocast_for(precision: str, device: torch.device):
    """The autocast context of ``precision`` on ``device``: bfloat16 for bf16, else a disabled one."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
