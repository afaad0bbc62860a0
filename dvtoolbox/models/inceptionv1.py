"""InceptionV1 (GoogLeNet) as lucid's modelzoo ``InceptionV1`` and lucent's ``inceptionv1``, with lucid's layer names.

The network of TensorFlow's ``inception5h`` graph (the one every lucid / lucent / distill.pub image of GoogLeNet
was made on), written so that its state dict has exactly the keys and shapes of lucent's ``inception5h.pth``
(converted by ProGamerGov; ``INCEPTION5H_URL``): a user's downloaded file loads directly.

Input: x (N, 3, H, W) float32, RGB, ``255 * image - 117`` (lucid's ``image_value_range = (-117, 138)``): exactly
dvtoolbox's pixel space with mean 117 in every channel, so forward does no rescaling. 224 x 224 for the classes.
Output: ``softmax2_pre_activation_matmul``, the 1008 class logits (N, 1008); ``softmax2`` (their softmax) is
computed too so that hooks see it. (lucent's forward returns the softmax; ours returns logits, like every dvtoolbox
model.) Classes: index 0 and 1001..1007 are unused ("dummy"); 1..1000 are the ILSVRC2012 classes in the old
devkit order of ``inception5h`` (``dvtoolbox/data/inceptionv1_wnids.txt``), named from the standard label list.

Layer names (``named_modules``; hook any of them): for each unit ``U`` a convolution ``U_pre_relu_conv`` (its
output is lucid's ``U_pre_relu``) and a ReLU ``U``; in order ``conv2d0``, ``maxpool0``, ``localresponsenorm0``,
``conv2d1``, ``conv2d2``, ``localresponsenorm1``, ``maxpool1``, ``mixed3a``, ``mixed3b``, ``maxpool4``,
``mixed4a`` .. ``mixed4e``, ``maxpool10``, ``mixed5a``, ``mixed5b``, ``avgpool0`` (N, 1024, 1, 1),
``softmax2_pre_activation_matmul`` (N, 1008), ``softmax2``. A mixed layer ``M`` is the channel concatenation of
``M_1x1``, ``M_3x3`` (after ``M_3x3_bottleneck``), ``M_5x5`` (after ``M_5x5_bottleneck``) and ``M_pool_reduce``
(after the 3x3 max pool ``M_pool``), all after their ReLUs, as lucid's ``mixed4a`` is. lucid's auxiliary heads
(``head0_bottleneck``, ``nn0``, ``softmax0``, ...) are not in the released file and not built.

Padding is TensorFlow's "SAME" computed for the actual input size (the odd pixel bottom / right; max pools pad
with -inf): at 224 x 224 it is exactly lucent's fixed ``F.pad`` calls. The local response normalisations use
lucent's constants (size 9, alpha 9.99999974738e-05, beta 0.5, k 1). ``avgpool0`` averages the whole final map
(lucent: a 7 x 7 window, the same at 224 x 224).
"""

from __future__ import annotations

import importlib.resources
import logging
import os
from typing import List, Tuple, Union

import torch
from torch import nn

from dvtoolbox.models.pixel_space import InputContract
from dvtoolbox.models.labels import imagenet_labels
from dvtoolbox.models.layers import Conv2dSame, MaxPool2dSame
from dvtoolbox.models.redirected_relu import RedirectedReLU
from dvtoolbox.models.registry import register_model
from dvtoolbox.models.weights import fetch_weights, load_weights

log = logging.getLogger(__name__)

INCEPTION5H_URL = "https://github.com/ProGamerGov/pytorch-old-tensorflow-models/raw/master/inception5h.pth"
WEIGHTS_FILE = "inception5h.pth"
# No checksum of inception5h.pth is published (lucent loads it without one); the download is checked by size
# (at least the float32 parameters) and then key by key and shape by shape against the model.
INCEPTION5H_SHA256 = None
INPUT_MEAN = (117.0, 117.0, 117.0)  # RGB, 0..255 scale: x = 255 * image - 117
NUM_CLASSES = 1008
LRN = dict(size=9, alpha=9.99999974738e-05, beta=0.5, k=1.0)

# name, in channels, 1x1, 3x3 bottleneck, 3x3, 5x5 bottleneck, 5x5, pool reduce (out = 1x1 + 3x3 + 5x5 + pool)
MIXED = (
    ("mixed3a", 192, 64, 96, 128, 16, 32, 32),
    ("mixed3b", 256, 128, 128, 192, 32, 96, 64),
    ("mixed4a", 480, 192, 96, 204, 16, 48, 64),
    ("mixed4b", 508, 160, 112, 224, 24, 64, 64),
    ("mixed4c", 512, 128, 128, 256, 24, 64, 64),
    ("mixed4d", 512, 112, 144, 288, 32, 64, 64),
    ("mixed4e", 528, 256, 160, 320, 32, 128, 128),
    ("mixed5a", 832, 256, 160, 320, 48, 128, 128),
    ("mixed5b", 832, 384, 192, 384, 48, 128, 128),
)
POOL_AFTER = {"mixed3b": "maxpool4", "mixed4e": "maxpool10"}  # stride-2 max pools between the stages


class Concat(nn.Module):
    """Channel concatenation of the branches of a mixed layer: a module so that hooks see the mixed output."""

    def forward(self, *branches: torch.Tensor) -> torch.Tensor:
        return torch.cat(branches, dim=1)


class InceptionV1(nn.Module):
    """InceptionV1 / GoogLeNet of ``inception5h`` (see the module docstring).

    pretrained: load ``inception5h.pth`` (from the cache folder, downloading it once; see ``download.py``).
    redirected_ReLU: build every ReLU as a ``RedirectedReLU`` (same forward values; lucid's redirected gradient,
    see ``redirected_relu.py``); lucent's default is True. progress: a download progress bar.
    forward(x): x (N, 3, H, W) RGB ``255 * image - 117`` -> logits (N, 1008).
    """

    def __init__(self, pretrained: bool = False, redirected_ReLU: bool = True, progress: bool = True):
        super().__init__()
        self.redirected_ReLU = bool(redirected_ReLU)
        self._unit("conv2d0", 3, 64, 7, stride=2)
        self.maxpool0 = MaxPool2dSame(3, 2)
        self.localresponsenorm0 = nn.LocalResponseNorm(**LRN)
        self._unit("conv2d1", 64, 64, 1)
        self._unit("conv2d2", 64, 192, 3)
        self.localresponsenorm1 = nn.LocalResponseNorm(**LRN)
        self.maxpool1 = MaxPool2dSame(3, 2)
        for name, c_in, c1, c3b, c3, c5b, c5, cp in MIXED:
            self._unit(f"{name}_1x1", c_in, c1, 1)
            self._unit(f"{name}_3x3_bottleneck", c_in, c3b, 1)
            self._unit(f"{name}_3x3", c3b, c3, 3)
            self._unit(f"{name}_5x5_bottleneck", c_in, c5b, 1)
            self._unit(f"{name}_5x5", c5b, c5, 5)
            self.add_module(f"{name}_pool", MaxPool2dSame(3, 1))
            self._unit(f"{name}_pool_reduce", c_in, cp, 1)
            self.add_module(name, Concat())
            if name in POOL_AFTER:
                self.add_module(POOL_AFTER[name], MaxPool2dSame(3, 2))
        self.avgpool0 = nn.AdaptiveAvgPool2d(1)
        self.softmax2_pre_activation_matmul = nn.Linear(1024, NUM_CLASSES)
        self.softmax2 = nn.Softmax(dim=1)
        self.input_contract = inceptionv1_contract()
        if pretrained:
            load_weights(self, inception5h_path(progress), "inceptionv1")

    def _unit(self, name: str, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        """A convolution ``name_pre_relu_conv`` (bias, "SAME" padding) and its ReLU ``name``."""
        self.add_module(f"{name}_pre_relu_conv", Conv2dSame(c_in, c_out, kernel, stride, padding=0, bias=True))
        self.add_module(name, RedirectedReLU() if self.redirected_ReLU else nn.ReLU())

    def _run(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, name)(getattr(self, f"{name}_pre_relu_conv")(x))

    def _mixed(self, name: str, x: torch.Tensor) -> torch.Tensor:
        b1 = self._run(f"{name}_1x1", x)
        b3 = self._run(f"{name}_3x3", self._run(f"{name}_3x3_bottleneck", x))
        b5 = self._run(f"{name}_5x5", self._run(f"{name}_5x5_bottleneck", x))
        bp = self._run(f"{name}_pool_reduce", getattr(self, f"{name}_pool")(x))
        return getattr(self, name)(b1, b3, b5, bp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.localresponsenorm0(self.maxpool0(self._run("conv2d0", x)))
        x = self._run("conv2d2", self._run("conv2d1", x))
        x = self.maxpool1(self.localresponsenorm1(x))
        for name, *_ in MIXED:
            x = self._mixed(name, x)
            if name in POOL_AFTER:
                x = getattr(self, POOL_AFTER[name])(x)
        logits = self.softmax2_pre_activation_matmul(torch.flatten(self.avgpool0(x), 1))
        self.softmax2(logits)  # computed so that hooks on "softmax2" see it
        return logits


def min_weights_bytes() -> int:
    """The float32 parameters of InceptionV1 in bytes: no complete ``inception5h.pth`` is smaller."""
    return 4 * sum(p.numel() for p in InceptionV1(redirected_ReLU=False).parameters())


def inception5h_path(progress: bool = True) -> str:
    """The local ``inception5h.pth``: in ``cache_dir()``, downloaded from ``INCEPTION5H_URL`` the first time."""
    return fetch_weights(WEIGHTS_FILE, INCEPTION5H_URL, sha256=INCEPTION5H_SHA256, min_bytes=min_weights_bytes(),
                         progress=progress)


def _wnids() -> List[str]:
    text = (importlib.resources.files("dvtoolbox") / "data" / "inceptionv1_wnids.txt").read_text("utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def imagenet_to_inceptionv1() -> Tuple[int, ...]:
    """For each standard ILSVRC2012 class index (0..999, the wnids sorted, as torchvision and efficientnet_lite0
    number them), its index among InceptionV1's 1008 logits (1..1000)."""
    wnids = _wnids()
    standard_of = {wnid: i for i, wnid in enumerate(sorted(wnids))}
    out = [0] * len(wnids)
    for position, wnid in enumerate(wnids):
        out[standard_of[wnid]] = position + 1
    return tuple(out)


def inceptionv1_labels() -> Tuple[str, ...]:
    """The 1008 class names of the logits: "dummy" at 0 and 1001..1007, ILSVRC2012 names at 1..1000 in
    inception5h's order."""
    standard = imagenet_labels()
    names = ["dummy"] * NUM_CLASSES
    for i, j in enumerate(imagenet_to_inceptionv1()):
        names[j] = standard[i]
    return tuple(names)


def inceptionv1_contract() -> InputContract:
    """224 x 224 RGB, mean 117 (0..255): dvtoolbox's pixel space is InceptionV1's input."""
    return InputContract(size=(224, 224), channel_order="RGB", mean=INPUT_MEAN,
                         label_layers=("softmax2_pre_activation_matmul", "softmax2"), labels=inceptionv1_labels())


@register_model("inceptionv1")
def inceptionv1(weights: Union[None, str, os.PathLike] = "default", redirected_ReLU: bool = True,
                progress: bool = True) -> InceptionV1:
    """InceptionV1 in eval mode with ``input_contract``. weights: "default" (``inception5h.pth`` from the cache
    folder, downloaded once), a path to a state dict with lucent's keys, or None (random weights from torch's
    RNG: seed it first)."""
    model = InceptionV1(pretrained=False, redirected_ReLU=redirected_ReLU)
    if weights is not None:
        path = inception5h_path(progress) if weights == "default" else os.fspath(weights)
        load_weights(model, path, "inceptionv1")
        log.debug("inceptionv1: loaded %s", path)
    return model.eval()
