"""A model from what a user types: ``load_model(spec)``, the one entry both command lines and the jobs use.

``spec`` is one of:

- a model name: registered (``efficientnet_lite0``), of a family (``torchvision:resnet50``, ``timm:...``,
  ``caffe:deploy.prototxt``) or a bare member name of torchvision's or timm's zoo (``resnet50``, ``vit_b_16``):
  ``registry.create_model`` with ``weights`` ("default", a path, or None for random weights);
- ``package.module:factory``: the user's own code, imported, ``factory()`` called with no arguments;
- a file ``*.pt`` / ``*.pth`` holding a whole module saved with ``torch.save(model, path)`` (unpickling runs the
  file's code: load only files you trust; a state dict needs its architecture: give the name and ``weights``).

A module without an ``input_contract`` is given RGB in [0, 1] normalised by ``input_mean`` / ``input_std`` (ImageNet's
by default) at ``size`` (``adapter.as_model``). TorchScript files are refused: layers of a scripted module cannot be
hooked by name.
"""

from __future__ import annotations

import importlib
import os
import re
import zipfile
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import nn

from dvtoolbox.errors import UsageError
from dvtoolbox.models.adapter import as_model
from dvtoolbox.models.registry import create_model, is_family_name

MODULE_FILES = (".pt", ".pth")
FACTORY = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


def load_model(spec: Union[str, nn.Module], weights="default", input_mean: Optional[Sequence[float]] = None,
               input_std: Optional[Sequence[float]] = None,
               size: Union[None, int, Tuple[int, int]] = None,
               first_image: Union[None, int, Tuple[int, int]] = None) -> nn.Module:
    """The model ``spec`` names (see the module docstring), in eval mode, taking dvtoolbox's pixel space;
    ``first_image``: the (H, W) of the job's first image, the size of a module that neither declares one nor is
    given ``size`` (``adapter.as_model``)."""
    if isinstance(spec, nn.Module):
        module = spec
    elif spec.endswith(MODULE_FILES) and not is_family_name(spec):
        module = _from_file(spec, weights)
    elif FACTORY.fullmatch(spec) and not is_family_name(spec):
        module = _from_factory(spec, weights)
    else:
        module = create_model(spec, weights=weights)
    declares = hasattr(module, "input_contract")  # size is then the run's, not a default of the network's input
    return as_model(module, input_mean, input_std, None if declares else size, first_image).eval()


def _from_factory(spec: str, weights) -> nn.Module:
    module_name, factory_name = spec.split(":")
    if weights not in ("default", None):
        raise UsageError(f"model {spec}: weights are the factory's to load; give weights only with a model name",
                         "model", "weights")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"model {spec}: cannot import {module_name} ({exc})", "model") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise UsageError(f"model {spec}: {module_name} has no callable {factory_name!r}", "model")
    net = factory()
    if not isinstance(net, nn.Module):
        raise UsageError(f"model {spec}: {factory_name}() returned a {type(net).__name__}, not an nn.Module",
                         "model")
    return net


def _is_torchscript(path: str) -> bool:
    """A TorchScript archive: a zip whose entries include its compiled code (``<archive>/code/...``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def _from_file(path: str, weights) -> nn.Module:
    if not os.path.isfile(path):
        raise UsageError(f"model {path!r}: no such file", "model")
    if weights not in ("default", None):
        raise UsageError(f"model {path!r}: the file holds its own weights; give weights only with a model name",
                         "model", "weights")
    if _is_torchscript(path):
        raise UsageError(f"model {path!r} is TorchScript, whose layers cannot be hooked by name; save the module "
                         "itself (torch.save(model, path)) or give package.module:factory", "model")
    try:
        net = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # any unreadable file is the user's input
        raise UsageError(f"model {path!r}: cannot read it ({type(exc).__name__}: {exc})", "model") from None
    if isinstance(net, dict):
        raise UsageError(f"model {path!r} holds a state dict, not a module: give its architecture as the model "
                         "and this file as its weights", "model", "weights")
    if not isinstance(net, nn.Module):
        raise UsageError(f"model {path!r} holds a {type(net).__name__}, not an nn.Module", "model")
    return net
