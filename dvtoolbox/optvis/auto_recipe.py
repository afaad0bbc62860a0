"""``--recipe auto`` (the default of ``visualize.py`` and ``VisualizeJob``): the recipe chosen from what is
visualised, read off the objective and the model's layer survey, by the table ``AUTO_TABLE`` measured in
doc/optvis.md#the-recipe-auto-picks.

Kinds (``objective_kind``), from the objective's first term and the layout of the layers it reads:

- ``class logit``: every layer it reads is flat, (N, C) (a classifier's logits, a pooled feature, a fully connected
  layer): the unit has no position;
- ``neuron``: one position of a layer (``layer:channel:y:x``, ``neuron``, ``direction_neuron``);
- ``dictionary latent``: a dictionary's latent (``NAME#k``) read over a conv or token layer;
- ``token feature``: a channel of a token layer (NTC: a ViT's block), averaged over its patches;
- ``hidden channel``: a channel of a conv layer (NCHW / NHWC), averaged over its grid.

A photograph to start from (``start_images``) always means ``accent``, and transparency (``alpha``) lucid's own
settings; neither needs the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, Mapping, Tuple

from dvtoolbox.models.layouts import Layout
from dvtoolbox.objectives.objective import INPUT, Objective

AUTO = "auto"
KINDS = ("class logit", "hidden channel", "neuron", "token feature", "dictionary latent")
NEURON_OBJECTIVES = ("neuron", "direction_neuron")
DICTIONARY_OBJECTIVES = ("dictionary_latent",)


@dataclass(frozen=True)
class AutoChoice:
    """What ``--recipe auto`` chose: the kind of unit, the recipe (a ``recipes.RECIPES`` name) and why (one
    clause, from the measurement)."""

    kind: str
    recipe: str
    why: str

    def line(self) -> str:
        """The one line the command line prints."""
        return f"recipe auto: {self.recipe} for a {self.kind} ({self.why}; --recipe NAME to choose another)"

    def record(self) -> Dict[str, str]:
        """config.yaml's ``resolved.recipe``."""
        return {"chosen": self.recipe, "for": self.kind, "why": self.why}


# kind -> (recipe, why): doc/optvis.md#the-recipe-auto-picks gives the measurements behind each row
AUTO_TABLE: Dict[str, Tuple[str, str]] = {
    "class logit": ("maco", "measured on 16 fresh classes: recognised by held-out models, closest to photographs"),
    "hidden channel": ("lucid", "measured on channels of two layers: the strongest activation, a quarter of MACO's "
                                "time"),
    "neuron": ("lucid", "measured: MACO's random crops move the neuron's place from view to view"),
    "token feature": ("lucid", "as a hidden channel; a token model's input size is fixed, so views are cropped"),
    "dictionary latent": ("lucid", "as the channels of the layer the dictionary reads"),
}
STARTS_FROM_PHOTOGRAPH = AutoChoice("unit in a photograph", "accent", "start_images given")
TRANSPARENT = AutoChoice("transparent image", "lucid", "alpha renders with lucid's settings")


def objective_kind(objective: Objective, layouts: Mapping[str, Layout]) -> str:
    """One of ``KINDS`` for ``objective`` on a model whose layers have ``layouts`` (name -> Layout, from
    ``models.layouts.survey_layers``)."""
    first = objective.name.split(" ")[0] if objective.name else ""
    if first in NEURON_OBJECTIVES:
        return "neuron"
    layers = sorted(name for name in (objective.layers or ()) if name != INPUT)
    kinds = [layouts[name].kind for name in layers if name in layouts]
    if kinds and all(kind == "NC" for kind in kinds):
        return "class logit"
    if first in DICTIONARY_OBJECTIVES:
        return "dictionary latent"
    if "NTC" in kinds:
        return "token feature"
    return "hidden channel"


FOURIER_SETTINGS = ("param", "decay_power")    # a recipe of another parameterisation would contradict them


def choose(kind: str, given: Iterable[str] = ()) -> AutoChoice:
    """The recipe ``AUTO_TABLE`` gives a unit of ``kind``; lucid's when ``given`` (the recipe settings given
    explicitly) holds a parameterisation or a spectrum decay and the table's recipe is not a Fourier image."""
    from dvtoolbox.optvis.recipes import RECIPES

    recipe, why = AUTO_TABLE[kind]
    fixed = [name for name in FOURIER_SETTINGS if name in set(given)]
    if fixed and RECIPES[recipe].param != "fft":
        return AutoChoice(kind, "lucid", f"{' and '.join(fixed)} given: the table's {recipe} is not a Fourier image")
    return AutoChoice(kind, recipe, why)
