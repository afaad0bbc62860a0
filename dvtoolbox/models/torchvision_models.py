"""torchvision's ImageNet classifiers by name, taking dvtoolbox's pixel space: ``create_model("torchvision:resnet50",
weights=...)``.

``TorchvisionClassifier`` wraps the torchvision network (submodule ``model``; its layers keep torchvision's names
under that prefix: ``model.layer4``, ``model.layer4.1.conv2``, ``model.fc``, ``model.features.12``) so that it takes
what every dvtoolbox model takes: x (N, 3, H, W) float32, RGB, ``255 * image`` minus ``255 * IMAGENET_MEAN``. The
first module, ``_normalize``, divides by ``255 * IMAGENET_STD`` (a non-persistent buffer), which gives exactly
torchvision's ``(image - mean) / std``. After the network: ``fc8`` (the class logits, an identity alias, as on
efficientnet_lite0) and ``prob`` (their softmax). forward returns the logits (N, 1000).

weights:
    a path       a torchvision state dict for that architecture (e.g. ``resnet50-11ad3fa6.pth``), loaded strictly;
    "default"    torchvision's DEFAULT weights: taken from the dvtoolbox cache folder, downloaded there once from
                 torchvision's URL and checked against the hash prefix in its file name; offline, a one-line
                 UsageError says where to put the file by hand;
    None         random weights (torch's global RNG), logged as a warning: never the default, so nothing makes
                 meaningless images without being asked to.
The contract's size is the crop size of the DEFAULT weights' transforms (224, or 299 for inception_v3), its labels
their ``meta["categories"]``; nothing is downloaded to know them.
"""

from __future__ import annotations

import logging
import os
import posixpath
import urllib.parse
from typing import List, Union

import torch
from torch import nn

from dvtoolbox.errors import UsageError
from dvtoolbox.models.pixel_space import InputContract
from dvtoolbox.models.layers import Normalize
from dvtoolbox.models.registry import register_family
from dvtoolbox.models.weights import fetch_weights, load_weights

log = logging.getLogger(__name__)

PREFIX = "torchvision:"
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, 0..1 scale (torchvision's)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Build arguments that make the module's state dict match torchvision's released files.
BUILD_KWARGS = {
    "googlenet": dict(aux_logits=True, init_weights=False, transform_input=True),
    "inception_v3": dict(aux_logits=True, init_weights=False, transform_input=True),
}


def torchvision_names() -> List[str]:
    """The torchvision classification architectures, sorted (``torchvision.models.list_models``)."""
    import torchvision.models

    return sorted(torchvision.models.list_models(module=torchvision.models))


class TorchvisionClassifier(nn.Module):
    """A torchvision classifier in dvtoolbox's pixel space (see the module docstring). forward(x): x (N, 3, H, W)
    RGB, 0..255 minus 255 * IMAGENET_MEAN -> logits (N, num_classes)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self._normalize = Normalize(tuple(255.0 * s for s in IMAGENET_STD))
        self.model = model
        self.fc8 = nn.Identity()
        self.prob = nn.Softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.fc8(self.model(self._normalize(x)))
        self.prob(logits)  # computed so that hooks on "prob" see it
        return logits


def _check_arch(arch: str) -> None:
    names = torchvision_names()
    if arch not in names:
        raise UsageError(f"unknown torchvision model {arch!r}; valid: {', '.join(PREFIX + n for n in names)}")


def contract_for(arch: str) -> InputContract:
    """Size and labels from the DEFAULT weights' metadata; mean 255 * IMAGENET_MEAN, RGB, classes on fc8 and prob."""
    import torchvision.models

    meta = torchvision.models.get_model_weights(arch).DEFAULT
    size = int(meta.transforms().crop_size[0])
    return InputContract(size=(size, size), channel_order="RGB", mean=tuple(255.0 * m for m in IMAGENET_MEAN),
                         label_layers=("fc8", "prob"), labels=tuple(meta.meta["categories"]))


def default_weights_path(arch: str, progress: bool = True) -> str:
    """torchvision's DEFAULT weights file of ``arch`` in the dvtoolbox cache folder (downloaded once, checked
    against the hash prefix torchvision puts in the file name)."""
    import torchvision.models

    url = torchvision.models.get_model_weights(arch).DEFAULT.url
    filename = posixpath.basename(urllib.parse.urlparse(url).path)
    stem = os.path.splitext(filename)[0]
    prefix = stem.rsplit("-", 1)[-1] if "-" in stem else None
    prefix = prefix if prefix and len(prefix) >= 8 and all(c in "0123456789abcdef" for c in prefix) else None
    return fetch_weights(filename, url, sha256=prefix, progress=progress)


def torchvision_model(arch: str, weights: Union[None, str, os.PathLike] = "default",
                      progress: bool = True) -> TorchvisionClassifier:
    """torchvision's ``arch`` wrapped in dvtoolbox's pixel space, in eval mode with ``input_contract`` (weights:
    see the module docstring)."""
    import torchvision.models

    _check_arch(arch)
    net = torchvision.models.get_model(arch, weights=None, **BUILD_KWARGS.get(arch, {}))
    if weights is None:
        log.warning("%s%s: random weights (weights=None); its images mean nothing", PREFIX, arch)
    else:
        path = default_weights_path(arch, progress) if weights == "default" else weights
        load_weights(net, path, PREFIX + arch)
        log.debug("%s%s: loaded %s", PREFIX, arch, path)
    model = TorchvisionClassifier(net)
    model.input_contract = contract_for(arch)
    return model.eval()


register_family(PREFIX, torchvision_model, "torchvision:<architecture> (e.g. torchvision:resnet50)")
