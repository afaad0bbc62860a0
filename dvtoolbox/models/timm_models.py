"""timm's models by name (timm is an optional extra: ``pip install dvtoolbox[timm]``): ``create_model("timm:
vit_tiny_patch16_224")``, or the bare name when torchvision has no model of that name.

The timm network is wrapped by ``adapter.wrap`` with the mean, std and input size of its ``pretrained_cfg`` (RGB,
0..1 scale), so it takes dvtoolbox's pixel space and keeps timm's layer names (``blocks.11``, ``blocks.11.attn``,
``blocks.11.mlp``, ``stages.2``); classifiers get ``fc8`` / ``prob`` after the network, with ImageNet's class names
when the model has 1000 classes.

weights:
    a path       a state dict for that architecture (``.pth``, ``.bin`` or ``.safetensors``), loaded strictly;
    "default"    timm's pretrained weights, from the user's timm / Hugging Face cache (downloaded there once, by timm,
                 when online); offline and not cached, a one-line UsageError says what to do;
    None         random weights (torch's global RNG), logged as a warning.
"""

from __future__ import annotations

import logging
import os
from typing import List, Union

from dvtoolbox.errors import UsageError
from dvtoolbox.models.adapter import PixelSpaceModel, wrap
from dvtoolbox.models.labels import imagenet_labels
from dvtoolbox.models.registry import register_family
from dvtoolbox.models.weights import load_weights

log = logging.getLogger(__name__)

PREFIX = "timm:"
INSTALL = "pip install timm (or dvtoolbox[timm])"


def _timm():
    try:
        import timm
    except ImportError:
        raise UsageError(f"timm models need the optional package timm: {INSTALL}", "model") from None
    return timm


def timm_names() -> List[str]:
    """timm's model names, sorted; [] when timm is not installed."""
    try:
        import timm
    except ImportError:
        return []
    return sorted(timm.list_models())


def timm_model(name: str, weights: Union[None, str, os.PathLike] = "default") -> PixelSpaceModel:
    """timm's ``name`` wrapped in dvtoolbox's pixel space, in eval mode with ``input_contract`` (weights: see the
    module docstring)."""
    timm = _timm()
    if name not in timm.list_models():
        raise UsageError(f"unknown timm model {name!r}; timm.list_models() lists the {len(timm.list_models())} "
                         "names", "model")
    if weights == "default":
        try:
            net = timm.create_model(name, pretrained=True)
        except Exception as exc:  # offline, not cached, no pretrained weights: timm / huggingface_hub raise many kinds
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
            raise UsageError(f"cannot get timm's pretrained weights for {name} ({reason}); offline? give weights="
                             "a local state dict, or download once online", "weights") from None
    else:
        net = timm.create_model(name, pretrained=False)
        if weights is None:
            log.warning("%s%s: random weights (weights=None); its images mean nothing", PREFIX, name)
        else:
            load_weights(net, weights, PREFIX + name)
    cfg = net.pretrained_cfg
    classes = getattr(net, "num_classes", 0)
    labels = imagenet_labels() if classes == 1000 else None
    size = tuple(cfg.get("input_size", (3, 224, 224))[1:])
    return wrap(net, cfg.get("mean"), cfg.get("std"), size, labels, classifier=classes > 0)


register_family(PREFIX, timm_model, "timm:<name> (e.g. timm:vit_tiny_patch16_224; needs timm)", timm_names)
