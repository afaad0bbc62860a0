"""Models with named layers and a declared input contract (see ``registry.py``, ``contract.py``).

Importing this package registers the built-in models: each module below registers itself with the registry.
"""

from dvtoolbox.models import caffe, efficientnet_lite, inceptionv1, torchvision_models  # noqa: F401  (registration)
