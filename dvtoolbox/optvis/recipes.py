"""Named rendering recipes: how many transformed views per step, which transform preset, the Fourier spectrum's
decay and Adam's learning rate. ``lucid`` is ``visualize()``'s own defaults; ``class`` is the recipe for class
visualisations measured in doc/models.md (images of a class made on one model that other models recognise, with
large object-like shapes); ``maco`` renders MACO's phase-only images (``param.maco``) and ``accent`` accentuates
features of a photograph (``accentuate``). Which to use for what is measured in doc/optvis.md#the-recipe-auto-picks
and chosen by ``visualize.py --recipe auto`` (the default; ``auto_recipe.AUTO_TABLE``).
``visualize.py --recipe NAME`` sets the flags' defaults (``Recipe.cli_defaults``).

    from dvtoolbox.optvis import FeatureViz, get_image
    from dvtoolbox.optvis.recipes import RECIPES

    r = RECIPES["class"]
    fv = FeatureViz(model, "fc8:112")
    (image,) = fv.visualize(lambda: get_image(224, decay_power=r.decay_power), thresholds=[512], lr=r.lr,
                            transforms=r.transform_list(), views=r.views)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, List, Optional

from dvtoolbox.optvis.transforms import preset_transforms


@dataclass(frozen=True)
class Recipe:
    """views: transformed copies per step (objective averaged); transforms: a ``TRANSFORM_PRESETS`` name;
    decay_power: ``get_image``'s spectrum decay; lr: Adam's learning rate; min_steps: the fewest steps it was
    measured to need; param: the parameterisation (``visualize.py --param``: "fft", or "maco" for
    ``param.maco.maco_image``; the accentuation recipe's Fourier image starts from ``--start-image``)."""

    views: int
    transforms: str
    decay_power: float
    lr: float
    min_steps: int
    param: str = "fft"

    def transform_list(self) -> Optional[List]:
        """The transforms for ``visualize(transforms=...)``: None (lucid's standard chain) or the preset's list."""
        return preset_transforms(self.transforms)

    def cli_defaults(self) -> Dict[str, object]:
        """The visualize.py flag defaults this recipe sets (argparse dests)."""
        values = asdict(self)
        values.pop("min_steps")
        return values


RECIPES: Dict[str, Recipe] = {
    "lucid": Recipe(views=1, transforms="standard", decay_power=1.0, lr=0.05, min_steps=128),
    "class": Recipe(views=4, transforms="strong", decay_power=2.0, lr=0.0015, min_steps=384),
    # MACO and feature accentuation (needs --start-image): doc/optvis.md#the-recipe-auto-picks
    # maco at 384 steps: on the tuning draw top-1 as often as at 256, more confident, nearer photographs (issue 22)
    "maco": Recipe(views=4, transforms="maco", decay_power=1.0, lr=0.2, min_steps=384, param="maco"),
    "accent": Recipe(views=4, transforms="maco", decay_power=1.0, lr=0.02, min_steps=128),
}
