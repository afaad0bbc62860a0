"""Models "of the user's own", for the tests of package.module:factory and of plain modules."""

import torch
from torch import nn


def tiny_sequential() -> nn.Module:
    """An nn.Sequential as a user writes it: conv (3 -> 4, 3x3), ReLU, pooling, flatten, linear (4 -> 3). Fixed
    weights: channel k of the conv is k + 1 times the sum over the 3x3 window of input channel k % 3."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3))
    with torch.no_grad():
        weight = torch.zeros(4, 3, 3, 3)
        for k in range(4):
            weight[k, k % 3] = k + 1.0
        model[0].weight.copy_(weight)
        model[0].bias.zero_()
    return model


def not_a_module():
    return 42


def raises():
    """A factory whose code fails."""
    raise ValueError("no weights for this size")


def needs_args(width):
    """A factory that needs an argument the command line cannot give."""
    return nn.Linear(width, 3)


class TinyNet(nn.Module):
    """A class of the user's own (not on the module-file allow-list): tiny_sequential's layers."""

    def __init__(self):
        super().__init__()
        self.body = tiny_sequential()

    def forward(self, x):
        return self.body(x)


class PayloadNet(TinyNet):
    """A user class whose unpickling writes ``marker`` (a file path kept in its state): a payload's stand-in."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker

    def __setstate__(self, state):
        with open(state["marker"], "w") as handle:
            handle.write("the payload ran")
        super().__setstate__(state)


class Payload:
    """An object whose unpickling calls ``builtins.open(marker, "w")``: it creates ``marker``."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")
