"""A registry of named models, as timm keeps one: ``@register_model``, ``create_model(name)``, ``list_models()``.

A registered factory takes ``weights`` (None for random weights, "default" for the model's own weights, or a path)
and returns a plain ``nn.Module`` in eval mode with an ``input_contract`` attribute (see ``contract.py``).
``"torchvision:<arch>"`` names any torchvision classifier (``torchvision_models.py``); they are not listed by
``list_models`` (``torchvision_models.torchvision_names()`` lists them).
"""

from __future__ import annotations

from typing import Callable, Dict, List

from torch import nn

from dvtoolbox.errors import UsageError

_MODELS: Dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    """Decorator: register a factory ``fn(weights="default", **kwargs) -> nn.Module`` under ``name``."""

    def decorate(fn):
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = fn
        return fn

    return decorate


def list_models() -> List[str]:
    """Names of every registered model, sorted."""
    _import_builtin_models()
    return sorted(_MODELS)


def create_model(name: str, weights="default", **kwargs) -> nn.Module:
    """Build the model registered as ``name``; an unknown name is a UsageError that lists the valid ones."""
    _import_builtin_models()
    if name.startswith("torchvision:"):
        from dvtoolbox.models.torchvision_models import torchvision_model

        model = torchvision_model(name[len("torchvision:"):], weights=weights, **kwargs)
    elif name not in _MODELS:
        raise UsageError(f"unknown model {name!r}; valid models: {', '.join(sorted(_MODELS))}, "
                         "or torchvision:<architecture> (e.g. torchvision:resnet50)")
    else:
        model = _MODELS[name](weights=weights, **kwargs)
    if not hasattr(model, "input_contract"):
        raise TypeError(f"model factory {name!r} returned a module without an input_contract")
    return model.eval()


def _import_builtin_models():
    # Importing the modules runs their @register_model decorators.
    from dvtoolbox.models import efficientnet_lite, inceptionv1  # noqa: F401
