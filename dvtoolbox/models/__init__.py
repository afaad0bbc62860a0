"""Models with named layers and a declared input contract (see ``registry.py``, ``pixel_space.py``).

Importing this package registers the built-in models: each module below registers itself with the registry.
"""

# torchvision before timm: a bare name both know (resnet50) is torchvision's
from dvtoolbox.models import (caffe, efficientnet_lite, inceptionv1, torchvision_models,  # noqa: F401  (registration)
                              timm_models, hf_models)
