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
