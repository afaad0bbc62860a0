"""``torchlight.models``: the models of the torchlight README (dvtoolbox's)."""

from dvtoolbox.models.inceptionv1 import InceptionV1
from dvtoolbox.models.redirected_relu import RedirectedReLU, redirect_relus
from dvtoolbox.models.registry import create_model, list_models

__all__ = ["InceptionV1", "RedirectedReLU", "create_model", "list_models", "redirect_relus"]
