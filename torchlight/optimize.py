"""``torchlight.optimize``: the render loop of the torchlight README (``dvtoolbox.optvis.render``)."""

from dvtoolbox.optvis.param import get_image
from dvtoolbox.optvis.render import FeatureViz

__all__ = ["FeatureViz", "get_image"]
