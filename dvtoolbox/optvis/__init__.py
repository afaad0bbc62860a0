"""Feature visualisation in the manner of lucid / lucent on dvtoolbox models (see doc/optvis.md).

    from dvtoolbox.optvis import FeatureViz, create_objective, get_image, show_images

    fv = FeatureViz(model=create_model("efficientnet_lite0"), objective="_blocks.10:97")
    images = fv.visualize(thresholds=[512], lr=0.05)      # [ (1, 224, 224, 3) float32 in [0, 1] ]

Modules: ``objectives`` (what to maximise), ``param`` (image parameterisations), ``transforms`` (random
augmentations), ``render`` (the loop), ``alpha`` and ``backgrounds`` (transparent visualisation,
lucid's alpha notebook), ``model_input`` ([0, 1] RGB -> the model's pixel space), ``show``.
The names the torchlight README imports: ``torchlight.optimize.FeatureViz`` -> ``FeatureViz``,
``torchlight.objective.create_objective`` -> ``create_objective``, ``torchlight.io.show_images`` -> ``show_images``,
``get_image`` -> ``get_image``.
"""

from dvtoolbox import objectives
from dvtoolbox.optvis import alpha, backgrounds, param, transforms
from dvtoolbox.optvis.alpha import (alpha_experiment, alpha_experiment_2, alpha_mean_penalty, image_sample_grid,
                                    render_transparent)
from dvtoolbox.optvis.backgrounds import make_bg_func
from dvtoolbox.models.pixel_space import from_model_input, to_model_input
from dvtoolbox.objectives import Activations, Objective, as_objective, create_objective, wrap_objective
from dvtoolbox.optvis.param import get_image, image_sample, param_defaults
from dvtoolbox.optvis.render import FeatureViz
from dvtoolbox.optvis.show import show_images

__all__ = [
    "Activations", "FeatureViz", "Objective", "alpha", "alpha_experiment", "alpha_experiment_2", "alpha_mean_penalty",
    "as_objective", "backgrounds", "create_objective", "from_model_input", "get_image", "image_sample",
    "image_sample_grid", "make_bg_func", "objectives", "param", "param_defaults", "render_transparent", "show_images",
    "to_model_input", "transforms", "wrap_objective",
]
