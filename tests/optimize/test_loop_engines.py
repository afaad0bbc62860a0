"""The loop's engines and precision modes against the eager, true-float32 loop: folded batch norms and compiled
graphs to float32 rounding, TF32 nothing on a CPU, bf16 within its ~2 decimal digits; auto is what it says."""

import numpy as np
import pytest
import torch
from torch import nn

from dvtoolbox.device import Execution
from dvtoolbox.models.pixel_space import InputContract
from dvtoolbox.models.program_cache import ProgramCache
from dvtoolbox.optimize.loop import optimize
from dvtoolbox.optimize.params import FindParams
from dvtoolbox.optimize.push import ObjectivePush, UnitPush
from dvtoolbox.optimize.start import initial_x
from tests.conftest import TINY_MEAN, TINY_SIZE, make_tiny
from tests.optimize.test_loop_device import assert_same_results
from tests.optimize.test_loop_reference import TABLE1_LIKE, tiny_mean


class TinyBNNet(nn.Module):
    """conv1 (3->6, 3x3, pad 1) -> bn1 -> relu1 -> flatten -> fc8 (384 -> 5) -> prob, seeded weights and batch-norm
    statistics far from the identity. x: (N, 3, 8, 8), 0..255 minus the mean."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(11)
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU()
        self.fc8, self.prob = nn.Linear(6 * 64, 5), nn.Softmax(dim=1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
            self.bn1.running_mean.copy_(torch.randn(6, generator=gen))
            self.bn1.running_var.copy_(torch.rand(6, generator=gen) + 0.2)
        self.input_contract = InputContract(size=TINY_SIZE, channel_order="RGB", mean=TINY_MEAN)
        self.eval().requires_grad_(False)

    def forward(self, x):
        logits = self.fc8(self.relu1(self.bn1(self.conv1(x / 64.0))).flatten(1))
        self.prob(logits)
        return logits


def run(model, row="row1", iters=10, units=(0, 2, 4), **kwargs):
    mean = tiny_mean()
    params = [FindParams(push_channel=c, rand_seed=c, max_iter=iters, **TABLE1_LIKE[row]) for c in units]
    x0 = np.stack([initial_x(q.start_at, q.rand_seed, mean) for q in params])
    return optimize(model, params, x0, mean, (5, 1, 1), **kwargs)


def assert_float32_rounding(results, reference, rtol=1e-5):
    for a, b in zip(results, reference):
        np.testing.assert_allclose(a.obj, b.obj, rtol=rtol, atol=rtol * np.abs(b.obj).max())
        np.testing.assert_allclose(a.last_xx, b.last_xx, rtol=rtol, atol=rtol * np.abs(b.last_xx).max())
        assert a.idxmax == b.idxmax and a.best_ii == b.best_ii and a.meta_result == b.meta_result


def test_folded_engine_folds_and_agrees_to_float32_rounding():
    eager = run(TinyBNNet())
    folded = run(TinyBNNet(), execution=Execution("folded"))
    assert_float32_rounding(folded, eager)
    assert [a.obj for a in folded] != [b.obj for b in eager]  # not the eager path again
    push = UnitPush(TinyBNNet(), "fc8", [(0, 0, 0)], [1.0], torch.device("cpu"), Execution("folded"))
    push(torch.zeros(1, 3, 8, 8))
    assert isinstance(push.network.module.bn1, nn.Identity)
    assert push.network.module.conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_compiled_engine_agrees_to_float32_rounding_and_compiles_once():
    """One graph per batch size, compiled by inductor (the CPU's C++ kernels), gives the eager loop's trace; other
    units and later calls with the same programs (the batches of a layer) reuse it."""
    model, programs = TinyBNNet(), ProgramCache()
    assert_float32_rounding(run(model, execution=Execution("compiled"), programs=programs), run(TinyBNNet()))
    assert_float32_rounding(run(model, units=(1, 3, 4), execution=Execution("compiled"), programs=programs),
                            run(TinyBNNet(), units=(1, 3, 4)))
    ((network, program),) = programs.values()
    assert len(program._graphs) == 1


def test_a_traced_objective_push_gives_the_eager_bits():
    model = make_tiny().requires_grad_(False)
    push = ObjectivePush(model, "fc8", "fc8:1 - 0.5*conv1:2", [1.0, -1.0], torch.device("cpu"))
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3)) * 40
    push.network.prepare(x)
    graph = push.program.trace(x, push.push_dirs)
    for got, want in zip(graph(x, push.push_dirs), push._forward_backward(x, push.push_dirs)):
        assert torch.equal(got, want)


def test_tf32_does_nothing_on_a_cpu():
    for a, b in zip(run(make_tiny(), execution=Execution("eager", "tf32")), run(make_tiny())):
        assert_same_results(a, b)


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:1"])
def test_auto_is_eager_on_every_device(device):
    """The decision stated in the docs (auto = eager: the original's numbers), not AUTO_ENGINE read back."""
    assert Execution().on(torch.device(device)) == Execution("eager", "float32")
    assert Execution("auto", "bf16").on(torch.device(device)) == Execution("eager", "bf16")


def test_auto_runs_the_eager_loop():
    for a, b in zip(run(make_tiny(), execution=Execution("auto")), run(make_tiny(), execution=Execution("eager"))):
        assert_same_results(a, b)


def test_bf16_autocast_keeps_about_two_decimal_digits():
    """bf16 keeps 8 bits of mantissa: the first iteration's obj within 1%, the images' statistics float64."""
    bf16 = run(TinyBNNet(), row="row3", iters=3, execution=Execution("eager", "bf16"))
    reference = run(TinyBNNet(), row="row3", iters=3)
    for a, b in zip(bf16, reference):
        assert a.obj[0] != b.obj[0]
        assert abs(a.obj[0] - b.obj[0]) <= 0.01 * abs(b.obj[0]) + 0.01
        assert a.last_xx.dtype == np.float64 and a.norm[0] == b.norm[0]  # x0 itself is the same


def test_an_unknown_engine_or_precision_is_a_usage_error():
    from dvtoolbox.errors import UsageError

    with pytest.raises(UsageError, match="engine must be one of auto, eager, folded, compiled, graphs, got 'fast'"):
        Execution("fast")
    with pytest.raises(UsageError, match="precision must be one of float32, tf32, bf16, got 'fp16'") as err:
        Execution(precision="fp16")
    assert err.value.fields == ("precision",)
