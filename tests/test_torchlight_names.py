"""The torchlight README's import lines run unchanged and name dvtoolbox's objects."""

import dvtoolbox.optvis as optvis
from dvtoolbox.models.inceptionv1 import InceptionV1 as DvtInceptionV1


def test_readme_import_lines():
    from torchlight.io import show_images
    from torchlight.models import InceptionV1
    from torchlight.objective import create_objective
    from torchlight.optimize import FeatureViz, get_image

    assert FeatureViz is optvis.FeatureViz and create_objective is optvis.create_objective
    assert show_images is optvis.show_images and get_image is optvis.get_image
    assert InceptionV1 is DvtInceptionV1


def test_readme_model_line_without_weights():
    from torchlight.models import InceptionV1
    from torchlight.objective import create_objective
    from torchlight.optimize import FeatureViz

    model = InceptionV1(pretrained=False, redirected_ReLU=True).eval()
    objective = create_objective("mixed4a:97") + create_objective("mixed5a:143")
    fv = FeatureViz(model=model, objective=objective)
    assert fv.objective.layers == {"mixed4a", "mixed5a"}
