"""Redirected ReLU against hand computations on small tensors (lucid's rule: see dvtoolbox/models/redirected_relu.py)."""

import numpy as np
import pytest
import torch
from torch import nn

from dvtoolbox.models.redirected_relu import (RedirectedReLU, redirect_relus, redirected_relu, redirected_relu6,
                                              replace_relus, restore_relus)


def grad_through(fn, x, g):
    """d(sum(fn(x) * g)) / dx: the gradient fn passes back when the incoming gradient is g."""
    x = torch.tensor(x, dtype=torch.float32, requires_grad=True)
    out = fn(x)
    out.backward(torch.tensor(g, dtype=torch.float32))
    return out.detach().numpy(), x.grad.numpy()


def test_forward_is_relu_and_relu6():
    x = torch.tensor([[-2.0, -0.5, 0.0, 0.5, 5.0, 6.0, 7.5]])
    assert torch.equal(redirected_relu(x), torch.relu(x))
    assert torch.equal(redirected_relu6(x), torch.nn.functional.relu6(x))


def test_live_element_gets_the_ordinary_gradient():
    # Element 0 has a live input (x = 2) with non-zero gradient: the ordinary ReLU gradient, zeros at x < 0
    # whatever their sign. x == 0 passes (lucid's where(x < 0, 0, g)).
    x = [[-1.0, 2.0, 0.0, -3.0]]
    g = [[-5.0, 7.0, 11.0, 13.0]]
    _, grad = grad_through(redirected_relu, x, g)
    np.testing.assert_array_equal(grad, [[0.0, 7.0, 11.0, 0.0]])


def test_dead_element_passes_only_the_upward_push():
    # Every input negative: the ordinary gradient is all zero, so the redirected one is used. The loss gradient
    # g < 0 asks for a larger output (descent raises x): it passes; g > 0 would push x further down: zeroed.
    x = [[-1.0, -2.0, -3.0, -4.0]]
    g = [[-5.0, 7.0, -11.0, 0.0]]
    _, grad = grad_through(redirected_relu, x, g)
    np.testing.assert_array_equal(grad, [[-5.0, 0.0, -11.0, 0.0]])


def test_rule_is_per_batch_element():
    # Element 0 is dead (redirected), element 1 is live (ordinary): neither affects the other.
    x = [[[-1.0, -2.0], [-3.0, -4.0]],
         [[-1.0, 2.0], [-3.0, 4.0]]]
    g = [[[-1.0, 2.0], [-3.0, 4.0]],
         [[-1.0, 2.0], [-3.0, 4.0]]]
    _, grad = grad_through(redirected_relu, x, g)
    np.testing.assert_array_equal(grad, [[[-1.0, 0.0], [-3.0, 0.0]],
                                         [[0.0, 2.0], [0.0, 4.0]]])


def test_live_input_with_zero_gradient_counts_as_dead():
    # x > 0 but its incoming gradient is 0: the ordinary gradient is all zero, so the dead inputs get the push.
    x = [[3.0, -1.0, -2.0]]
    g = [[0.0, -2.0, 5.0]]
    _, grad = grad_through(redirected_relu, x, g)
    np.testing.assert_array_equal(grad, [[0.0, -2.0, 0.0]])


def test_relu6_upper_side():
    # Dead everywhere (x < 0 or x > 6): below, only g < 0 passes; above, only g > 0 (descent lowers x) passes.
    x = [[-1.0, -1.0, 7.0, 7.0]]
    g = [[-2.0, 3.0, -5.0, 11.0]]
    _, grad = grad_through(redirected_relu6, x, g)
    np.testing.assert_array_equal(grad, [[-2.0, 0.0, 0.0, 11.0]])
    # One live input (x = 3): the ordinary ReLU6 gradient.
    _, grad = grad_through(redirected_relu6, [[-1.0, 3.0, 7.0]], [[-2.0, 5.0, 11.0]])
    np.testing.assert_array_equal(grad, [[0.0, 5.0, 0.0]])


def test_needs_batch_dimension():
    with pytest.raises(ValueError, match="batch dimension"):
        grad_through(redirected_relu, [-1.0, 2.0], [1.0, 1.0])


def test_starts_an_ascent_that_a_plain_relu_cannot():
    # One dead unit y = relu(w . x + b) with w . x + b < 0: plain ReLU gives zero gradient, the redirected one
    # gives -w * g (the direction that raises the pre-activation).
    w = torch.tensor([[0.5, -1.0]])
    x = torch.tensor([[1.0, 2.0]], requires_grad=True)
    loss = -redirected_relu(x @ w.T - 1.0).sum()  # maximise y: g = -1
    loss.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[-0.5, 1.0]])
    x.grad = None
    (-torch.relu(x @ w.T - 1.0).sum()).backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0.0, 0.0]])


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.act = nn.ReLU(inplace=True)
        self.block = nn.Sequential(nn.Linear(3, 3), nn.ReLU6())


def test_redirect_relus_swaps_and_restores():
    net = _Net()
    act, six = net.act, net.block[1]
    with redirect_relus(net) as same:
        assert same is net
        assert isinstance(net.act, RedirectedReLU) and net.act.upper is None
        assert isinstance(net.block[1], RedirectedReLU) and net.block[1].upper == 6.0
        assert [n for n, _ in net.named_modules()] == ["", "fc", "act", "block", "block.0", "block.1"]
    assert net.act is act and net.block[1] is six


def test_redirect_relus_restores_when_the_body_raises():
    net = _Net()
    act = net.act
    with pytest.raises(RuntimeError):
        with redirect_relus(net):
            raise RuntimeError("boom")
    assert net.act is act


def test_replace_relus_returns_what_restore_needs():
    net = _Net()
    swapped = replace_relus(net)
    assert [(name, type(orig).__name__) for _, name, orig in swapped] == [("act", "ReLU"), ("1", "ReLU6")]
    restore_relus(swapped)
    assert isinstance(net.act, nn.ReLU)
