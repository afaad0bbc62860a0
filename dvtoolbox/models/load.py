"""A model from what a user types: ``load_model(spec)``, the one entry both command lines and the jobs use.

``spec`` is one of:

- a model name: registered (``efficientnet_lite0``), of a family (``torchvision:resnet50``, ``timm:...``,
  ``caffe:deploy.prototxt``) or a bare member name of torchvision's or timm's zoo (``resnet50``, ``vit_b_16``):
  ``registry.create_model`` with ``weights`` ("default", a path, or None for random weights);
- ``package.module:factory``: the user's own code, imported, ``factory()`` called with no arguments (an import or
  a factory that fails is a one-line UsageError naming the factory and its error; the traceback is logged at DEBUG);
- a file ``*.pt`` / ``*.pth`` holding a whole module saved with ``torch.save(model, path)``: read through an
  allow-list of torch.nn's, torchvision's and timm's module classes, or, with ``trust_model_file``, unpickled whole
  (which runs whatever code the file names: ``module_files``). A state dict needs its architecture: give the name
  and ``weights``.

Names are data; a file or a factory is code. ``model_kind`` tells them apart for the settings readers, which take
names only.

A module without an ``input_contract`` is given RGB in [0, 1] normalised by ``input_mean`` / ``input_std`` (ImageNet's
by default) at ``size`` (``adapter.as_model``). TorchScript files are refused: layers of a scripted module cannot be
hooked by name.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import zipfile
from typing import Optional, Sequence, Tuple, Union

from torch import nn

from dvtoolbox.errors import UsageError
from dvtoolbox.models.adapter import as_model
from dvtoolbox.models.module_files import load_module_file
from dvtoolbox.models.registry import create_model, is_family_name

log = logging.getLogger(__name__)

MODULE_FILES = (".pt", ".pth")
FACTORY = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


def load_model(spec: Union[str, nn.Module], weights="default", input_mean: Optional[Sequence[float]] = None,
               input_std: Optional[Sequence[float]] = None,
               size: Union[None, int, Tuple[int, int]] = None,
               first_image: Union[None, int, Tuple[int, int]] = None, trust_model_file: bool = False) -> nn.Module:
    """The model ``spec`` names (see the module docstring), in eval mode, taking dvtoolbox's pixel space.
    ``first_image``: the (H, W) of the job's first image, the size of a module that neither declares one nor is
    given ``size`` (``adapter.as_model``). ``trust_model_file``: unpickle a module file whole, past the
    allow-list (the user's explicit opt-in)."""
    kind = "module" if isinstance(spec, nn.Module) else model_kind(spec)
    if kind == "module":
        module = spec
    elif kind == "file":
        module = _from_file(spec, weights, trust_model_file)
    elif kind == "factory":
        module = _from_factory(spec, weights)
    else:
        module = create_model(spec, weights=weights)
    declares = hasattr(module, "input_contract")  # size is then the run's, not a default of the network's input
    return as_model(module, input_mean, input_std, None if declares else size, first_image).eval()


def model_kind(spec: str) -> str:
    """What a model string names: "file" (a saved module), "factory" (package.module:factory) or "name" (a
    registered model, a family member, a zoo name: data, not code)."""
    if is_family_name(spec):
        return "name"
    if spec.endswith(MODULE_FILES):
        return "file"
    return "factory" if FACTORY.fullmatch(spec) else "name"


def _from_factory(spec: str, weights) -> nn.Module:
    module_name, factory_name = spec.split(":")
    if weights not in ("default", None):
        raise UsageError(f"model {spec}: weights are the factory's to load; give weights only with a model name",
                         "model", "weights")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - the user's module: whatever it raises is their input's error
        raise _user_code_error(spec, f"cannot import {module_name}: ", exc) from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise UsageError(f"model {spec}: {module_name} has no callable {factory_name!r}", "model")
    try:
        net = factory()
    except Exception as exc:  # noqa: BLE001 - a factory that raises, or that takes required arguments
        raise _user_code_error(spec, f"{factory_name}() raised ", exc) from None
    if not isinstance(net, nn.Module):
        raise UsageError(f"model {spec}: {factory_name}() returned a {type(net).__name__}, not an nn.Module",
                         "model")
    return net


def _user_code_error(spec: str, what: str, exc: Exception) -> UsageError:
    """One line naming the factory and the error; the traceback goes to the log (the command lines' -v)."""
    log.info("model %s: %s%s", spec, what, type(exc).__name__, exc_info=exc)
    said = " ".join(str(exc).split())
    return UsageError(f"model {spec}: {what}{type(exc).__name__}" + (f": {said}" if said else ""), "model")


def _is_torchscript(path: str) -> bool:
    """A TorchScript archive: a zip whose entries include its compiled code (``<archive>/code/...``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def _from_file(path: str, weights, trust_model_file: bool) -> nn.Module:
    if not os.path.isfile(path):
        raise UsageError(f"model {path!r}: no such file", "model")
    if weights not in ("default", None):
        raise UsageError(f"model {path!r}: the file holds its own weights; give weights only with a model name",
                         "model", "weights")
    if _is_torchscript(path):
        raise UsageError(f"model {path!r} is TorchScript, whose layers cannot be hooked by name; save the module "
                         "itself (torch.save(model, path)) or give package.module:factory", "model")
    net = load_module_file(path, trust_model_file)
    if isinstance(net, dict):
        raise UsageError(f"model {path!r} holds a state dict, not a module: give its architecture as the model "
                         "and this file as its weights", "model", "weights")
    if not isinstance(net, nn.Module):
        raise UsageError(f"model {path!r} holds a {type(net).__name__}, not an nn.Module", "model")
    return net
