"""DVT's step in pixel space, shared by both engines: the post-step regularizers (``operations``: decay, blur,
percentile clips; their settings declared once in ``settings.Regularizers``) and the learning-rate policies
(``lr_policies``: constant, progress, progress01).
"""

from dvtoolbox.regularizers.lr_policies import REQUIRED_LR_KEYS, gradient_step, learning_rate, validate_lr_params
from dvtoolbox.regularizers.operations import gaussian_blur, regularize
from dvtoolbox.regularizers.settings import REGULARIZER_FIELDS, Regularizers

__all__ = ["REGULARIZER_FIELDS", "REQUIRED_LR_KEYS", "Regularizers", "gaussian_blur", "gradient_step",
           "learning_rate", "regularize", "validate_lr_params"]
