"""FeatureViz's execution: the forward pass ends at the last layer the objective reads (the same images bit for bit),
folded batch norms and the compiled value-and-gradient graph agree to float32 rounding, bf16 to its precision;
engine graphs is the DVT loop's only."""

import numpy as np
import pytest

from dvtoolbox import objectives as obj
from dvtoolbox.device import Execution
from dvtoolbox.errors import UsageError
from dvtoolbox.models import program
from dvtoolbox.optvis import FeatureViz, get_image
from tests.conftest import make_tiny
from tests.optimize.test_loop_engines import TinyBNNet

def images(model, objective="conv1:1", steps=6, fv=None, **kwargs):
    fv = FeatureViz(model, objective) if fv is None else fv
    out = fv.visualize(lambda: get_image(8, batch=2), thresholds=[steps], seed=3, **kwargs)
    return out[0], fv.history


def test_the_forward_pass_ends_at_the_last_layer_read_and_gives_the_same_bits(monkeypatch):
    model = make_tiny()
    fv = FeatureViz(model, "conv1:1")  # its layout survey runs the whole model once, before the steps
    calls = []
    model.fc8.register_forward_hook(lambda *_: calls.append(1))
    early, early_history = images(model, fv=fv)
    assert calls == []  # fc8 comes after conv1: never run
    monkeypatch.setattr(program.CapturedNetwork, "__init__", _full_forward(program.CapturedNetwork.__init__))
    full_fv = FeatureViz(model, "conv1:1")  # a FeatureViz keeps its prepared networks: a new one builds its own
    calls.clear()
    full, full_history = images(model, fv=full_fv)
    assert len(calls) == 6
    assert early.tobytes() == full.tobytes() and early_history == full_history


def _full_forward(init):
    def patched(self, model, names, stop_when_complete, *args, **kwargs):
        init(self, model, names, False, *args, **kwargs)

    return patched


def test_folded_batch_norms_agree_to_float32_rounding():
    eager, _ = images(TinyBNNet(), "bn1:2")
    folded, _ = images(TinyBNNet(), "relu1:2", execution=Execution("folded"))
    reference, _ = images(TinyBNNet(), "relu1:2")
    np.testing.assert_allclose(folded, reference, rtol=1e-5, atol=1e-5)
    assert folded.tobytes() != reference.tobytes() and eager.shape == folded.shape


@pytest.mark.filterwarnings("ignore:`torch._prims_common.check` is deprecated:FutureWarning")  # inductor's own
@pytest.mark.parametrize("objective", ["fc8:3", obj.channel("fc8", 3) - 0.01 * obj.L2() + obj.diversity("conv1")])
def test_compiled_value_and_gradient_agree_to_float32_rounding(objective):
    """The forward, the objective (the image itself too: L2) and their gradient to the model input in one
    compiled graph, then the backward pass through the transforms into the Fourier parameters."""
    compiled, history = images(make_tiny(), objective, execution=Execution("compiled"))
    reference, ref_history = images(make_tiny(), objective)
    np.testing.assert_allclose(compiled, reference, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(history, ref_history, rtol=1e-4, atol=1e-6)


def test_bf16_autocast_keeps_about_two_decimal_digits():
    bf16, history = images(make_tiny(), "fc8:3", steps=1, execution=Execution("eager", "bf16"))
    _, reference = images(make_tiny(), "fc8:3", steps=1)
    assert history[0] != reference[0] and abs(history[0] - reference[0]) <= 0.01 * abs(reference[0]) + 0.01


def test_engine_graphs_is_the_dvt_loops_only():
    with pytest.raises(UsageError, match="engine graphs replays the DVT loop's iterations"):
        images(make_tiny(), execution=Execution("graphs"))
