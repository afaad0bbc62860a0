"""VisualizeJob / run_visualize: visualize.py's whole job from Python, with errors that name the job's fields."""

import pathlib

import numpy as np
import pytest
import yaml

from dvtoolbox.errors import UsageError
from dvtoolbox.io.images import load_image_rgb, to_uint8
from dvtoolbox.optvis import FeatureViz, get_image
from dvtoolbox.optvis.job import VisualizeJob, run_visualize
from dvtoolbox.regularizers.settings import Regularizers
from tests.conftest import make_tiny

PHOTO = pathlib.Path(__file__).parents[1] / "data" / "images" / "ILSVRC2012_val_00000610.jpg"


def test_run_visualize_writes_what_featureviz_makes(tmp_path):
    job = VisualizeJob(model="tiny_test", objective="fc8:2 + 0.5 * fc8:1", thresholds=(2, 3), batch=2,
                       transforms="none", output_dir=str(tmp_path), config={"made-by": "a test"}, recipe="lucid")
    written = run_visualize(job)
    assert [p.split("/")[-1] for p in written] == ["viz_step2_0.png", "viz_step2_1.png", "viz_step3_0.png",
                                                   "viz_step3_1.png", "viz_info.txt", "viz_config.yaml"]
    fv = FeatureViz(make_tiny(), "fc8:2 + 0.5 * fc8:1")
    _, last = fv.visualize(lambda: get_image(8, batch=2), thresholds=[2, 3], transforms=[])
    np.testing.assert_array_equal(load_image_rgb(str(tmp_path / "viz_step3_1.png")), to_uint8(last[1]))
    config = yaml.safe_load((tmp_path / "viz_config.yaml").read_text())
    assert config["made-by"] == "a test" and config["resolved"] == {"model": "tiny_test", "device": "cpu",
                                                                           "size": [8, 8], "engine": "eager",
                                                                           "precision": "float32"}


def test_the_objective_is_parsed_once_and_checked_against_the_model(tmp_path):
    job = VisualizeJob(model="tiny_test", objective="fc9:1", thresholds=(1,), output_dir=str(tmp_path))
    assert str(job.parsed_objective) == "channel('fc9', 1)"
    with pytest.raises(UsageError, match="unknown layer 'fc9'"):
        run_visualize(job)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("kwargs, message, fields", [
    (dict(batch=0), r"batch must be an integer in \[1, 4096\], got 0", ("batch",)),
    (dict(batch=1.5), r"batch must be an integer in \[1, 4096\], got 1.5", ("batch",)),
    (dict(views=10**6), r"views must be an integer in \[1, 4096\], got 1000000", ("views",)),
    (dict(size=10**5), r"size must be an integer in \[1, 8192\], got 100000", ("size",)),
    (dict(seed=2**64), r"seed must be an integer in \[0, 18446744073709551615\]", ("seed",)),
    (dict(seed=-1), r"seed must be an integer in \[0, 18446744073709551615\], got -1", ("seed",)),
    (dict(lr=float("inf")), "lr must be a finite number, got inf", ("lr",)),
    (dict(lr=float("nan")), "lr must be a finite number, got nan", ("lr",)),
    (dict(lr="0.1"), "lr must be a finite number, got '0.1'", ("lr",)),
    (dict(decay_power=float("inf")), "decay_power must be >= 0 and finite, got inf", ("decay_power",)),
    (dict(lr_policy="constant", lr_params={"lr": float("nan")}), "must be finite and > 0, got lr=nan",
     ("lr_params", "lr_policy")),
    (dict(thresholds=(10**9,)), r"thresholds must be strictly increasing integers in \[1, 100000000\]",
     ("thresholds",)),
    (dict(param="fancy"), "param must be one of fft, pixel, lowres, dvt", ("param",)),
    (dict(regularizers=Regularizers(decay=0.1)), "regularizers need param dvt, got param fft",
     ("regularizers", "param")),
    (dict(alpha=True, batch=2), "alpha cannot be combined with batch 2", ("alpha", "batch", "lr")),
    (dict(background="noise"), "background needs alpha", ("background", "alpha")),
    (dict(lr_params={"lr": 1.0}), "lr_params needs lr_policy", ("lr_params", "lr_policy")),
    (dict(thresholds=(3, 2)), "thresholds must be strictly increasing", ("thresholds",)),
])
def test_bad_settings_name_the_field(kwargs, message, fields):
    with pytest.raises(UsageError, match=message) as info:
        VisualizeJob(model="tiny_test", objective="fc8:1", **kwargs)
    assert info.value.fields == fields


def test_two_start_images_make_two_accentuated_images(tmp_path):
    """One image per photograph (batch follows start_images), each with its start image, as ``accentuate`` makes
    them for the same photographs."""
    import os

    from dvtoolbox.io.images import resize_center_crop
    from dvtoolbox.optvis.accentuate import accentuate
    from dvtoolbox.optvis.transforms import preset_transforms

    photos = [os.path.join(os.path.dirname(__file__), "..", "data", "images", name)
              for name in ("ILSVRC2012_val_00000610.jpg", "ILSVRC2012_val_00006451.jpg")]
    job = VisualizeJob(model="tiny_test", objective="fc8:2", thresholds=(3,), start_images=photos,
                       accent_layer="conv1", accent_coef=0.5, transforms="maco", views=2, output_dir=str(tmp_path))
    assert job.batch == 2
    names = sorted(p.split("/")[-1] for p in run_visualize(job))
    assert names == ["viz_config.yaml", "viz_info.txt", "viz_start_0.png", "viz_start_1.png", "viz_step3_0.png",
                     "viz_step3_1.png"]
    starts = np.stack([resize_center_crop(load_image_rgb(p), 8, round(8 * 256 / 224)) for p in photos])
    result = accentuate(make_tiny(), "fc8:2", starts.astype(np.float32) / 255.0, layer="conv1", coef=0.5,
                        thresholds=[3], lr=0.02, views=2, transforms=preset_transforms("maco"))  # auto: accent's lr
    for n in range(2):
        np.testing.assert_array_equal(load_image_rgb(str(tmp_path / f"viz_step3_{n}.png")),
                                      to_uint8(result.images[0][n]))


@pytest.mark.parametrize("kwargs, message, fields", [
    (dict(param="maco", decorrelate=False), "param maco cannot be combined with decorrelate=False",
     ("param", "decorrelate=False")),
    (dict(accent_coef=1.0), "accent_coef needs start_images", ("accent_coef", "start_images")),
    (dict(recipe="accent"), "recipe accent accentuates a photograph: give start_images", ("recipe", "start_images")),
    (dict(fit="stretch"), "fit must be one of crop, resize, got 'stretch'", ("fit",)),
])
def test_maco_and_accentuation_settings_are_checked(kwargs, message, fields):
    with pytest.raises(UsageError, match=message) as info:
        VisualizeJob(model="tiny_test", **kwargs)
    assert info.value.fields == fields


@pytest.mark.parametrize("recipe", [None, "lucid", "class", "maco", "accent"])
def test_a_recipe_gives_the_job_the_settings_the_command_line_gives(recipe, tmp_path):
    from dvtoolbox.cli.visualize import job_from_args, parse_args
    from dvtoolbox.optvis.recipes import RECIPES

    photo = ["--start-image", str(PHOTO)] if recipe == "accent" else []
    argv = ["--model", "tiny_test", "--output-dir", str(tmp_path)] + photo + (["--recipe", recipe] if recipe else [])
    from_cli = job_from_args(parse_args(argv))
    from_python = VisualizeJob(model="tiny_test", output_dir=str(tmp_path), recipe=recipe,
                               start_images=[str(PHOTO)] if recipe == "accent" else ())
    expected = RECIPES[recipe or "lucid"]
    for name in ("param", "views", "transforms", "decay_power", "lr"):
        assert getattr(from_python, name) == getattr(from_cli, name) == getattr(expected, name), name


def test_a_setting_given_wins_over_the_recipe(tmp_path):
    from dvtoolbox.cli.visualize import job_from_args, parse_args

    from_cli = job_from_args(parse_args(["--model", "tiny_test", "--recipe", "maco", "--views", "2", "--lr", "0.1"]))
    from_python = VisualizeJob(model="tiny_test", recipe="maco", views=2, lr=0.1)
    assert (from_python.views, from_python.lr, from_python.param) == (from_cli.views, from_cli.lr, from_cli.param) \
        == (2, 0.1, "maco")


def test_compiled_without_the_fit_to_the_model_size_is_refused():
    with pytest.raises(UsageError, match="engine compiled traces one graph per input size") as info:
        VisualizeJob(model="tiny_test", engine="compiled", resize_to_contract=False)
    assert info.value.fields == ("engine", "resize_to_contract=False")
