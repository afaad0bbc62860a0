"""Layers several models share: TensorFlow's "SAME" padding for convolutions and max pools, and the division by
a per-channel std that turns dvtoolbox's pixel space into a network's own input scale.

Shapes are (N, C, H, W) throughout; weight keys are those of the torch modules they subclass, so state dicts of
the original networks load unchanged.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def same_pad(size: int, kernel: int, stride: int) -> int:
    """Total padding TF "SAME" adds along one axis of length ``size``: the output has ceil(size / stride) cells."""
    return max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)


class Normalize(nn.Module):
    """x / std: (N, 3, H, W) mean-subtracted 0..255 in, network scale out. ``std`` on the 0..255 scale, 3 floats
    in the input's channel order; a non-persistent buffer, so the state dict is unchanged."""

    def __init__(self, std: Sequence[float]):
        super().__init__()
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / self.std


class Conv2dSame(nn.Conv2d):
    """A convolution with TensorFlow's "SAME" padding: output size ceil(in / stride), the odd pixel of padding
    on the bottom and right. (N, C, H, W) in any H, W; the weight keys are those of ``nn.Conv2d``.

    Where the padding is the same on both sides of both axes (stride 1 with an odd kernel, the depthwise
    convolutions of EfficientNet), the convolution pads by itself: the same zeros without a padded copy of the
    input in the forward pass and a cropped copy of the gradient in the backward pass. For depthwise convolutions
    that gives the padded copy's numbers bit for bit on the CPU; a dense convolution may sum in another order
    (float32 rounding): ``tests/models/test_efficientnet_lite.py``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad_h = same_pad(x.shape[-2], self.kernel_size[0], self.stride[0])
        pad_w = same_pad(x.shape[-1], self.kernel_size[1], self.stride[1])
        if pad_h % 2 == 0 and pad_w % 2 == 0 and self.padding_mode == "zeros":
            return F.conv2d(x, self.weight, self.bias, self.stride, (pad_h // 2, pad_w // 2), self.dilation,
                            self.groups)
        x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return super().forward(x)


class MaxPool2dSame(nn.Module):
    """Max pool with TensorFlow "SAME" padding (-inf, the odd pixel bottom / right): (N, C, H, W) ->
    (N, C, ceil(H / stride), ceil(W / stride))."""

    def __init__(self, kernel: int, stride: int):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad_h = same_pad(x.shape[-2], self.kernel, self.stride)
        pad_w = same_pad(x.shape[-1], self.kernel, self.stride)
        x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=float("-inf"))
        return F.max_pool2d(x, self.kernel, self.stride)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, stride={self.stride}"
