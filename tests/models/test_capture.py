"""LayerCapture on a tiny fixed-weight nn.Sequential: exact outputs, hooks removed on exit, unknown names."""

import pytest
import torch
from torch import nn

from dvtoolbox.errors import UsageError
from dvtoolbox.models.capture import LayerCapture, layer_shapes


@pytest.fixture
def tiny():
    """Linear(2 -> 2) with weight [[1, -1], [2, 0]], bias [0, -1], then ReLU."""
    lin = nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -1.0], [2.0, 0.0]]))
        lin.bias.copy_(torch.tensor([0.0, -1.0]))
    return nn.Sequential(lin, nn.ReLU())


def n_hooks(model):
    return sum(len(m._forward_hooks) for m in model.modules())


def test_captures_named_outputs(tiny):
    x = torch.tensor([[1.0, 3.0]])
    with LayerCapture(tiny, ["0", "1"]) as cap:
        out = tiny(x)
    assert cap.outputs["0"].tolist() == [[-2.0, 1.0]]
    assert cap.outputs["1"].tolist() == [[0.0, 1.0]]
    assert cap.outputs["1"] is out


def test_captured_output_stays_in_graph(tiny):
    x = torch.tensor([[1.0, 3.0]], requires_grad=True)
    with LayerCapture(tiny, ["0"]) as cap:
        tiny(x)
    cap.outputs["0"][0, 1].backward()
    assert x.grad.tolist() == [[2.0, 0.0]]


def test_hooks_removed_after_exit(tiny):
    with LayerCapture(tiny, ["0", "1"]):
        assert n_hooks(tiny) == 2
    assert n_hooks(tiny) == 0


def test_hooks_removed_after_exception(tiny):
    with pytest.raises(RuntimeError, match="boom"):
        with LayerCapture(tiny, ["0"]):
            assert n_hooks(tiny) == 1
            raise RuntimeError("boom")
    assert n_hooks(tiny) == 0


def test_no_capture_after_exit(tiny):
    with LayerCapture(tiny, ["0"]) as cap:
        pass
    tiny(torch.ones(1, 2))
    assert cap.outputs == {}


def test_unknown_name_lists_valid_names(tiny):
    with pytest.raises(UsageError, match=r"unknown layer 'fc9'; valid layers: 0, 1$"):
        LayerCapture(tiny, ["fc9"])
    assert n_hooks(tiny) == 0


def test_layer_shapes():
    assert layer_shapes(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), (5, 6)) == {"0": (4, 3, 4), "1": (4, 3, 4)}


def test_stop_when_complete_skips_later_layers():
    import torch
    from torch import nn

    from dvtoolbox.models.capture import LayerCapture, StopForward

    calls = []
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    model[2].register_forward_pre_hook(lambda *_: calls.append("last"))
    with LayerCapture(model, ["1"], stop_when_complete=True) as cap:
        try:
            model(torch.ones(1, 2))
        except StopForward:
            pass
    assert calls == [] and cap.outputs["1"].shape == (1, 2)
