"""One way in for every kind of objective: ``create_objective(spec)`` takes an expression string (the command
lines' grammar, ``expression.py``: ``"fc8:130"``, ``"_blocks.10:97:7:7"``, ``"fc8:1 + 0.5 * fc8:2@1"``), an
``Objective`` or a plain callable ``acts -> 0-dim tensor``; ``check_layers`` and ``hooked_layers`` tie an objective
to a model's layers.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional

from torch import nn

from dvtoolbox.errors import UsageError
from dvtoolbox.models.capture import named_layers, resolve_layer
from dvtoolbox.objectives.expression import parse_objective
from dvtoolbox.objectives.objective import INPUT, Batch, Objective


def create_objective(spec, batch: Batch = None, model: Optional[nn.Module] = None,
                     dictionaries: Optional[Mapping] = None) -> Objective:
    """An Objective from an expression string (``expression.py``: ``"layer:channel"`` is ``channel``,
    ``"layer:channel:y:x"`` is ``neuron``, joined by ``+ -`` and scaled by numbers, ``@b`` per term); ``batch`` is
    the batch of every term that has no ``@``. An Objective is returned unchanged and a plain callable
    ``acts -> tensor`` is wrapped (reading every layer). With ``model``, the layers are checked now: an unknown one
    is a UsageError listing the valid names. ``dictionaries``: name -> ``LayerDictionary``, for a string's
    ``DICT#k`` terms."""
    if isinstance(spec, Objective):
        if batch is not None:
            raise UsageError(f"batch= applies to a string objective, not to the Objective {spec}")
        objective = spec
    elif isinstance(spec, str):
        objective = parse_objective(spec, default_batch=batch, dictionaries=dictionaries)
    elif callable(spec):
        if batch is not None:
            raise UsageError("batch= applies to a string objective, not to a callable")
        objective = Objective(spec, getattr(spec, "__name__", "custom"))
    else:
        raise UsageError(f"an objective is a 'layer:channel' expression, an Objective or a callable, got {spec!r}")
    if model is not None:
        check_layers(objective, model)
    return objective


as_objective = create_objective


def check_layers(objective: Objective, model: nn.Module) -> None:
    """UsageError (listing the valid names) if ``objective`` reads a layer ``model`` does not have."""
    for name in sorted(objective.layers or ()):
        if name != INPUT:
            resolve_layer(model, name)


def hooked_layers(objective: Objective, model: nn.Module) -> Dict[str, nn.Module]:
    """The layers to capture for ``objective``: the ones it declares, or every named module when it declares
    None."""
    if objective.layers is None:
        return named_layers(model)
    return {name: resolve_layer(model, name) for name in sorted(objective.layers) if name != INPUT}
