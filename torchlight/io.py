"""``torchlight.io``: showing images as in the torchlight README (``dvtoolbox.optvis.show``)."""

from dvtoolbox.optvis.show import show_images

__all__ = ["show_images"]
