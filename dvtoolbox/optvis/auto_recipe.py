"""``--recipe auto`` (the default of ``visualize.py`` and ``VisualizeJob``): the recipe chosen from what is
visualised, read off the objective and the model's layer survey, by the table ``AUTO_TABLE`` measured in
doc/optvis.md#the-recipe-auto-picks.

Kinds (``objective_kind``), from the objective's first term and the layout of the layers it reads:

- ``class logit``: every layer it reads is flat, (N, C) (a classifier's logits, a pooled feature, a fully connected
  layer): the unit has no position;
- ``neuron``: one position of a layer (``layer:channel:y:x``, ``neuron``, ``direction_neuron``);
- ``dictionary latent``: a dictionary's latent (``NAME#k``) read over a conv layer's grid;
- ``dictionary latent on tokens``: a dictionary's latent read over a token layer (NTC: a ViT's block);
- ``token feature``: a channel of a token layer (NTC: a ViT's block), averaged over its patches;
- ``hidden channel``: a channel of a conv layer (NCHW / NHWC), averaged over its grid.

A photograph to start from (``start_images``) always means ``accent``, and transparency (``alpha``) lucid's own
settings; neither needs the model.

A row may also feed the transformed image to the model at its own size (``own_size``, as lucid and lucent feed it)
instead of cropping or padding it to the model's size: only where the model takes other sizes (a dry forward pass
at two other sizes, ``models.capture.takes_other_sizes``) and has no token layers (a ViT would interpolate its
position embeddings: not measured), the run draws one view per step (views of several sizes share one forward
pass) and nothing pins the size (``fit`` given, the compiled engine); otherwise the image is cropped and the line
says why.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, Iterable, Mapping

from dvtoolbox.models.layouts import Layout
from dvtoolbox.objectives.objective import INPUT, Objective

AUTO = "auto"
KINDS = ("class logit", "hidden channel", "neuron", "token feature", "dictionary latent",
         "dictionary latent on tokens")
NEURON_OBJECTIVES = ("neuron", "direction_neuron")
DICTIONARY_OBJECTIVES = ("dictionary_latent",)
TEXT_OBJECTIVES = ("text_direction",)   # an image embedding towards a prompt: a flat unit, whatever terms follow


FED_OWN_SIZE = "at its own size"
FED_MODEL_SIZE = "cropped to the model's size"


@dataclass(frozen=True)
class AutoRow:
    """One row of ``AUTO_TABLE``: the recipe (a ``recipes.RECIPES`` name), why (one clause, from the measurement)
    and whether the transformed image is fed at its own size where the model allows it."""

    recipe: str
    why: str
    own_size: bool = False


@dataclass(frozen=True)
class AutoChoice:
    """What ``--recipe auto`` chose: the kind of unit, the recipe (a ``recipes.RECIPES`` name), why (one clause,
    from the measurement), whether the transformed image is fed at its own size (the table's wish until
    ``settle_fit``) and, once settled, why it is not."""

    kind: str
    recipe: str
    why: str
    own_size: bool = False
    cropped_because: str = ""

    def settle_fit(self, blocker: str) -> "AutoChoice":
        """The choice once the model is known: ``blocker`` is empty when the image can be fed at its own size,
        else the reason it is cropped."""
        if not self.own_size or not blocker:
            return self
        return replace(self, own_size=False, cropped_because=blocker)

    @property
    def fed(self) -> str:
        return FED_OWN_SIZE if self.own_size else FED_MODEL_SIZE

    def line(self) -> str:
        """The one line the command line prints."""
        fed = f", fed {FED_OWN_SIZE}" if self.own_size else (
            f", cropped to the model's size ({self.cropped_because})" if self.cropped_because else "")
        return (f"recipe auto: {self.recipe} for a {self.kind}{fed} ({self.why}; --recipe NAME to choose "
                "another)")

    def record(self) -> Dict[str, str]:
        """config.yaml's ``resolved.recipe``."""
        record = {"chosen": self.recipe, "for": self.kind, "why": self.why, "fed": self.fed}
        if self.cropped_because:
            record["cropped_because"] = self.cropped_because
        return record


# kind -> row: doc/optvis.md#the-recipe-auto-picks gives the measurements behind each row
AUTO_TABLE: Dict[str, AutoRow] = {
    "class logit": AutoRow("lucid", "measured on 16 fresh classes, 3 seeds: recognised by held-out models as well "
                                    "as lucent at its best or better", own_size=True),
    "hidden channel": AutoRow("lucid", "measured on channels of two layers: the strongest activation, a quarter of "
                                       "MACO's time"),
    "neuron": AutoRow("lucid", "measured: MACO's random crops move the neuron's place from view to view"),
    "token feature": AutoRow("maco", "measured on 6 channels of a ViT block (random weights): more activation on 5 "
                                     "of 6, and no patch grid in the spectrum where lucid's images gain one"),
    "dictionary latent": AutoRow("lucid", "as the channels of the conv layer the dictionary reads"),
    "dictionary latent on tokens": AutoRow("maco", "measured on 6 latents of a random dictionary on a ViT block "
                                                   "(random weights): more activation on 5 of 6"),
}
STARTS_FROM_PHOTOGRAPH = AutoChoice("unit in a photograph", "accent", "start_images given")
TRANSPARENT = AutoChoice("transparent image", "lucid", "alpha renders with lucid's settings")


def objective_kind(objective: Objective, layouts: Mapping[str, Layout]) -> str:
    """One of ``KINDS`` for ``objective`` on a model whose layers have ``layouts`` (name -> Layout, from
    ``models.layouts.survey_layers``)."""
    first = objective.name.split(" ")[0] if objective.name else ""
    if first in NEURON_OBJECTIVES:
        return "neuron"
    if first in TEXT_OBJECTIVES:
        return "class logit"
    layers = sorted(name for name in (objective.layers or ()) if name != INPUT)
    kinds = [layouts[name].kind for name in layers if name in layouts]
    if kinds and all(kind == "NC" for kind in kinds):
        return "class logit"
    if first in DICTIONARY_OBJECTIVES:
        return "dictionary latent on tokens" if "NTC" in kinds else "dictionary latent"
    if "NTC" in kinds:
        return "token feature"
    return "hidden channel"


FOURIER_SETTINGS = ("param", "decay_power")    # a recipe of another parameterisation would contradict them


def choose(kind: str, given: Iterable[str] = ()) -> AutoChoice:
    """The recipe ``AUTO_TABLE`` gives a unit of ``kind``; lucid's when ``given`` (the recipe settings given
    explicitly) holds a parameterisation or a spectrum decay and the table's recipe is not a Fourier image."""
    from dvtoolbox.optvis.recipes import RECIPES

    row = AUTO_TABLE[kind]
    fixed = [name for name in FOURIER_SETTINGS if name in set(given)]
    if fixed and RECIPES[row.recipe].param != "fft":
        return AutoChoice(kind, "lucid", f"{' and '.join(fixed)} given: the table's {row.recipe} is not a Fourier "
                                         "image")
    return AutoChoice(kind, row.recipe, row.why, own_size=row.own_size)
