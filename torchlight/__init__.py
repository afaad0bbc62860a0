"""The names of the torchlight README, importable unchanged: an alias package over dvtoolbox (see doc/models.md).

    from torchlight.optimize import FeatureViz           # dvtoolbox.optvis.FeatureViz
    from torchlight.models import InceptionV1            # dvtoolbox.models.inceptionv1.InceptionV1
    from torchlight.objective import create_objective    # dvtoolbox.optvis.create_objective
    from torchlight.io import show_images                # dvtoolbox.optvis.show_images

Nothing is implemented here; every name is the dvtoolbox object itself.
"""

from dvtoolbox.optvis import FeatureViz, create_objective, get_image, show_images

__all__ = ["FeatureViz", "create_objective", "get_image", "show_images"]
