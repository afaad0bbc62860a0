"""Objectives, shared by both engines (the DVT loop's ``--objective`` and feature visualisation): what to maximise.

    from dvtoolbox import objectives
    obj = objectives.channel("_blocks.10", 97) - 0.05 * objectives.total_variation()
    obj = objectives.create_objective("fc8:130 + 0.5 * fc8:131")       # the command lines' grammar

Modules: ``objective`` (the ``Objective`` class, its arithmetic, ``wrap_objective``), ``library`` (the named
objectives and penalties), ``expression`` (the one string grammar), ``create`` (``create_objective`` for strings,
Objectives and callables; checking an objective's layers against a model).
"""

from dvtoolbox.objectives.create import as_objective, check_layers, create_objective, hooked_layers
from dvtoolbox.objectives.expression import parse_objective
from dvtoolbox.objectives.library import (L1, L2, alignment, blur3, blur_input_each_step, channel,
                                          channel_interpolate, class_logit, deepdream,
                                          dictionary_latent, direction, direction_neuron,
                                          text_direction,
                                          diversity, layer, neuron, total_variation)
from dvtoolbox.objectives.objective import INPUT, Activations, Objective, wrap_objective

__all__ = [
    "INPUT", "L1", "L2", "Activations", "Objective", "alignment", "as_objective", "blur3", "blur_input_each_step",
    "channel", "channel_interpolate", "check_layers", "class_logit", "create_objective", "deepdream",
    "dictionary_latent", "direction", "direction_neuron", "diversity", "hooked_layers", "layer", "neuron", "parse_objective", "text_direction", "total_variation",
    "wrap_objective",
]
