"""Any ``nn.Module`` in dvtoolbox's pixel space, without ceremony: ``as_model(module)``.

A network as its users hold it (their own module, torchvision's, timm's) takes an RGB image in [0, 1] normalised by
a per-channel mean and std (the ecosystem's convention; ImageNet's by default). ``PixelSpaceModel`` wraps it so that
it takes what every dvtoolbox model takes, ``x = 255 * image - 255 * mean`` (RGB, the model's ``input_contract``),
and divides by ``255 * std`` before the network: exactly ``(image - mean) / std``. The network is the wrapper's
``net`` child, and its layers keep their own names (``layer_prefix``: ``capture.named_layers`` shows ``layer4``, not
``net.layer4``). For a classifier, ``fc8`` (an identity on the logits) and ``prob`` (their softmax) are added so
that the original's default ``--push-layer fc8`` and label layers work.

``as_model(module)`` returns a module that declares an ``input_contract`` unchanged, and wraps any other one with the
defaults (ImageNet mean and std, RGB, the input size the module declares or else 224 x 224: ``input_size.py``), said
in one log line; every default can be given.
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import nn

from dvtoolbox.checks import check_reals
from dvtoolbox.errors import UsageError
from dvtoolbox.models.input_size import DEFAULT_SIZE, input_size
from dvtoolbox.models.layers import Normalize
from dvtoolbox.models.pixel_space import InputContract

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, 0..1 scale (torchvision's and timm's default)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PixelSpaceModel(nn.Module):
    """``net`` taking RGB in [0, 1] normalised by ``mean`` / ``std`` (0..1 scale), in dvtoolbox's pixel space.
    forward(x): x (N, 3, H, W) float32, RGB, 0..255 minus 255 * mean -> the network's output. ``classifier``: add
    ``fc8`` (identity on the logits) and ``prob`` (their softmax) after the network."""

    layer_prefix = "net."

    def __init__(self, net: nn.Module, std: Sequence[float], classifier: bool = False):
        super().__init__()
        self._normalize = Normalize(tuple(255.0 * float(s) for s in std))
        self.net = net
        self.classifier = classifier
        if classifier:
            self.fc8 = nn.Identity()
            self.prob = nn.Softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(self._normalize(x))
        if self.classifier:
            out = self.fc8(out)
            self.prob(out)  # computed so that hooks on "prob" see it
        return out


def pixel_space_contract(size: Tuple[int, int] = (DEFAULT_SIZE, DEFAULT_SIZE),
                         mean: Sequence[float] = IMAGENET_MEAN, labels: Optional[Sequence[str]] = None,
                         label_layers: Sequence[str] = ()) -> InputContract:
    """The contract of a wrapped network: RGB, mean ``255 * mean`` (0..255 scale), ``size`` (H, W)."""
    return InputContract(size=tuple(int(s) for s in size), channel_order="RGB",
                         mean=tuple(255.0 * float(m) for m in mean), label_layers=tuple(label_layers),
                         labels=tuple(labels) if labels is not None else None)


def wrap(net: nn.Module, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
         size: Tuple[int, int] = (DEFAULT_SIZE, DEFAULT_SIZE), labels: Optional[Sequence[str]] = None,
         classifier: bool = False) -> PixelSpaceModel:
    """``PixelSpaceModel(net)`` with its ``input_contract``, in eval mode; ``mean`` and ``std`` RGB on the 0..1
    scale (3 finite numbers; std > 0), ``size`` (H, W); with ``classifier`` the labels live on ``fc8`` and
    ``prob``."""
    mean, std = check_reals("input_mean", mean, 3), check_reals("input_std", std, 3)
    if not all(s > 0 for s in std):
        raise UsageError(f"input_std must be > 0, got {std!r}", "input_std")
    model = PixelSpaceModel(net, std, classifier)
    model.input_contract = pixel_space_contract(size, mean, labels, ("fc8", "prob") if classifier else ())
    return model.eval()


def as_model(module: nn.Module, input_mean: Optional[Sequence[float]] = None,
             input_std: Optional[Sequence[float]] = None,
             size: Union[None, int, Tuple[int, int]] = None,
             first_image: Union[None, int, Tuple[int, int]] = None) -> nn.Module:
    """``module`` itself when it declares an ``input_contract``; else ``wrap(module)`` with the ecosystem's
    defaults (RGB in [0, 1], ImageNet mean and std) or the ones given, at the input size ``input_size.input_size``
    settles: ``size`` (a side or (H, W)) when given, else the one the module declares (torchvision's
    ``image_size``, timm's patch embedding or ``pretrained_cfg``, a ``default_size`` / ``input_size`` attribute),
    else ``first_image``'s (H, W) (the first image the job has), else 224 x 224; all said in one log line with
    where the size came from."""
    if not isinstance(module, nn.Module):
        raise UsageError(f"a model is an nn.Module, got {type(module).__name__}", "model")
    if hasattr(module, "input_contract"):
        if input_mean is not None or input_std is not None or size is not None:
            raise UsageError(f"{type(module).__name__} declares its own input contract; input_mean, input_std and "
                             "size apply to networks without one", "model")
        return module
    mean = check_reals("input_mean", input_mean, 3) if input_mean is not None else IMAGENET_MEAN
    std = check_reals("input_std", input_std, 3) if input_std is not None else IMAGENET_STD
    hw, source = input_size(module, size, first_image)
    log.warning("%s has no input_contract: it is given RGB images in [0, 1] normalised by mean %s and std %s, "
                "%dx%d (size from %s; set input_mean, input_std, size to change this)", type(module).__name__,
                _fmt(mean), _fmt(std), hw[0], hw[1], source)
    return wrap(module, mean, std, hw)


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"
