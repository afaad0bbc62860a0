"""torchvision's ImageNet classifiers by name, taking dvtoolbox's pixel space: ``create_model("resnet50")`` (or
``"torchvision:resnet50"``), for every name of torchvision's classification zoo.

The torchvision network is wrapped by ``adapter.wrap`` (``PixelSpaceModel``) so that it takes what every dvtoolbox
model takes: x (N, 3, H, W) float32, RGB, ``255 * image`` minus ``255 * IMAGENET_MEAN``, divided by ``255 *
IMAGENET_STD`` before the network: exactly torchvision's ``(image - mean) / std``. Its layers keep torchvision's own
names (``layer4``, ``layer4.1.conv2``, ``fc``, ``features.12``, ``encoder.layers.encoder_layer_11``); after the
network come ``fc8`` (the class logits, an identity alias, as on efficientnet_lite0) and ``prob`` (their softmax).
forward returns the logits (N, 1000).

weights:
    a path       a torchvision state dict for that architecture (e.g. ``resnet50-11ad3fa6.pth``), loaded strictly;
    "default"    torchvision's DEFAULT weights: taken from the user's torch cache (``torch.hub.get_dir()``/
                 checkpoints, where torchvision itself keeps them), downloaded there once from torchvision's URL and
                 checked against the hash prefix in its file name; offline, a one-line UsageError says where to put
                 the file by hand;
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
from typing import List, Tuple, Union

import torch

from dvtoolbox.errors import UsageError
from dvtoolbox.models.adapter import IMAGENET_MEAN, IMAGENET_STD, PixelSpaceModel, wrap
from dvtoolbox.models.registry import register_family
from dvtoolbox.models.weights import fetch_weights, load_weights

log = logging.getLogger(__name__)

PREFIX = "torchvision:"
# Build arguments that make the module's state dict match torchvision's released files.
BUILD_KWARGS = {
    "googlenet": dict(aux_logits=True, init_weights=False, transform_input=True),
    "inception_v3": dict(aux_logits=True, init_weights=False, transform_input=True),
}


def torchvision_names() -> List[str]:
    """The torchvision classification architectures, sorted (``torchvision.models.list_models``)."""
    import torchvision.models

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _check_arch(arch: str) -> None:
    names = torchvision_names()
    if arch not in names:
        raise UsageError(f"unknown torchvision model {arch!r}; valid: {', '.join(PREFIX + n for n in names)}")


def size_and_labels(arch: str) -> Tuple[int, Tuple[str, ...]]:
    """The crop size and class names of the DEFAULT weights' metadata (nothing is downloaded)."""
    import torchvision.models

    meta = torchvision.models.get_model_weights(arch).DEFAULT
    return int(meta.transforms().crop_size[0]), tuple(meta.meta["categories"])


def default_weights_path(arch: str, progress: bool = True) -> str:
    """torchvision's DEFAULT weights file of ``arch`` in the user's torch cache (downloaded once, checked against the
    hash prefix torchvision puts in the file name)."""
    import torchvision.models

    url = torchvision.models.get_model_weights(arch).DEFAULT.url
    filename = posixpath.basename(urllib.parse.urlparse(url).path)
    stem = os.path.splitext(filename)[0]
    prefix = stem.rsplit("-", 1)[-1] if "-" in stem else None
    prefix = prefix if prefix and len(prefix) >= 8 and all(c in "0123456789abcdef" for c in prefix) else None
    return fetch_weights(filename, url, sha256=prefix, progress=progress,
                         folder=os.path.join(torch.hub.get_dir(), "checkpoints"))


def torchvision_model(arch: str, weights: Union[None, str, os.PathLike] = "default",
                      progress: bool = True) -> PixelSpaceModel:
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
    size, labels = size_and_labels(arch)
    return wrap(net, IMAGENET_MEAN, IMAGENET_STD, (size, size), labels, classifier=True)


register_family(PREFIX, torchvision_model, "torchvision:<architecture> (e.g. torchvision:resnet50)",
                torchvision_names)
