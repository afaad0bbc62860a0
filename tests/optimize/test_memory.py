"""A process that optimizes on many models keeps none of them: the programs belong to their owner (a job's run
context, a FeatureViz, one optimize() call), never to a module-level table. Measured: fifty optimize() calls on
fifty different models, each carrying 33 MiB of weights, with an eager unit push, a folded copy and a plain callable
objective."""

import gc
import os
import weakref

import numpy as np
import pytest
import torch

from dvtoolbox.device import Execution
from dvtoolbox.optimize.loop import optimize
from dvtoolbox.optimize.params import FindParams
from dvtoolbox.optimize.start import initial_x
from tests.conftest import TinyNet, make_tiny
from tests.optimize.test_loop_reference import tiny_mean

BALLAST = 33 << 18  # float32 values: 33 MiB, above glibc's largest mmap threshold, so a freed copy leaves the process
MODELS = 50


def heavy_tiny() -> TinyNet:
    """The tiny fixed-weight net with 33 MiB of weights it never reads (pages touched, so resident)."""
    model = make_tiny()
    model.register_buffer("ballast", torch.ones(BALLAST))
    return model


def resident_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def one_run(model, how: str) -> None:
    mean = tiny_mean()
    params = [FindParams(push_layer="fc8", push_channel=1, max_iter=2, lr_params={"lr": 10.0})]
    x0 = np.stack([initial_x(q.start_at, q.rand_seed, mean) for q in params])
    kwargs = {"folded": dict(execution=Execution("folded")),
              "callable objective": dict(objective=lambda acts: acts["fc8"][0, 1])}.get(how, {})
    optimize(model, params, x0, mean, (5, 1, 1), **kwargs)


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="resident memory is read from /proc (Linux)")
@pytest.mark.parametrize("how", ["unit", "folded", "callable objective"])
def test_fifty_models_optimized_one_after_another_are_all_freed(how):
    alive, resident = [], []
    for k in range(1, MODELS + 1):
        model = heavy_tiny()
        one_run(model, how)
        alive.append(weakref.ref(model))
        del model
        if k % 10 == 0:  # a leak of 10 models would be 330 MiB
            gc.collect()
            resident.append(resident_bytes())
    assert [ref() for ref in alive] == [None] * MODELS
    growth = resident[-1] - resident[0]  # over the last 40 models
    assert growth < 4 * BALLAST * 4, f"resident memory grew by {growth / 2**20:.0f} MiB over {MODELS - 10} models"
