"""``--recipe auto``: the kind of unit read off the objective and the layouts, the table's recipe, the fallback
when Fourier settings are given, and the command line: one printed line, config.yaml's record, and exactly the
image the named recipe makes."""

import numpy as np
import pytest
import torch
import yaml

from dvtoolbox.cli.visualize import main
from dvtoolbox.io.images import load_image_rgb, to_uint8
from dvtoolbox.models.layouts import NC, NCHW, Layout
from dvtoolbox.objectives import create_objective
from dvtoolbox.objectives.objective import Objective
from dvtoolbox.optvis import FeatureViz, get_image
from dvtoolbox.models.capture import takes_other_sizes
from dvtoolbox.optvis import auto_recipe
from dvtoolbox.optvis.auto_recipe import AUTO_TABLE, KINDS, AutoRow, choose, objective_kind
from dvtoolbox.optvis.job import VisualizeJob
from dvtoolbox.optvis.param.maco import maco_image
from dvtoolbox.optvis.recipes import RECIPES
from tests.conftest import make_tiny
from tests.models.user_models import tiny_sequential

LAYOUTS = {"fc8": NC, "fc7": NC, "conv": NCHW, "conv_last": Layout("NHWC"),
           "blocks.1": Layout("NTC", prefix=1, grid=(2, 2))}


@pytest.fixture(autouse=True)
def _one_thread(_seed_everything):
    torch.set_num_threads(1)


@pytest.mark.parametrize("spec, kind", [
    ("fc8:1", "class logit"),
    ("fc8:1 - 0.5 * fc7:3", "class logit"),           # every layer flat
    ("conv:1", "hidden channel"),
    ("conv_last:1", "hidden channel"),                # channels last is still a grid
    ("conv:1 + fc8:2", "hidden channel"),             # a grid among the layers: not a flat unit
    ("conv:1:0:0", "neuron"),
    ("blocks.1:1", "token feature"),
    ("blocks.1:1:1:0", "neuron"),
])
def test_objective_kind(spec, kind):
    assert objective_kind(create_objective(spec), LAYOUTS) == kind


@pytest.mark.parametrize("layer, kind", [("conv", "dictionary latent"), ("blocks.1", "dictionary latent on tokens"),
                                         ("fc8", "class logit")])
def test_a_dictionary_latent_is_its_own_kind_on_a_grid(layer, kind):
    latent = Objective(lambda acts: acts[layer].sum(), "dictionary_latent", layers=[layer])
    assert objective_kind(latent, LAYOUTS) == kind


def test_every_kind_has_a_known_recipe():
    assert set(AUTO_TABLE) == set(KINDS)
    for kind in KINDS:
        choice = choose(kind)
        assert choice.recipe in RECIPES and choice.kind == kind and choice.why
        fed = ", fed at its own size" if choice.own_size else ""
        assert choice.line().startswith(f"recipe auto: {choice.recipe} for a {kind}{fed} (")


@pytest.mark.parametrize("given", [("decay_power",), ("param",), ("param", "lr")])
def test_fourier_settings_given_keep_a_fourier_recipe(given, monkeypatch):
    monkeypatch.setitem(AUTO_TABLE, "class logit", AutoRow("maco", "a MACO row"))
    assert choose("class logit", given).recipe == "lucid" and not choose("class logit", given).own_size
    assert choose("class logit", ("lr", "views")).recipe == "maco"   # other settings do not


def test_the_job_waits_for_the_model_then_takes_the_recipes_settings_not_the_given_ones():
    job = VisualizeJob(model="tiny_test", objective="fc8:2", views=2)
    assert job.recipe == "auto" and job.recipe_pending and job.recipe_name is None
    assert (job.param, job.lr) == ("fft", 0.05)                      # lucid's, until the model decides
    choice = job.settle_recipe({"fc8": NC})
    expected = AUTO_TABLE["class logit"].recipe
    assert choice.recipe == expected and job.recipe_name == expected and not job.recipe_pending
    assert (job.param, job.lr, job.transforms) == (RECIPES[expected].param, RECIPES[expected].lr,
                                                   RECIPES[expected].transforms)
    assert job.views == 2                                            # given explicitly: kept
    named = VisualizeJob(model="tiny_test", objective="fc8:2", recipe="class")
    assert named.settle_recipe({"fc8": NC}) is None and named.lr == RECIPES["class"].lr


def test_a_photograph_or_alpha_is_decided_without_the_model():
    assert VisualizeJob(model="tiny_test", objective="fc8:2", alpha=True).recipe_name == "lucid"


def run(tmp_path, *flags):
    argv = ["--model", "tiny_test", "--steps", "3", "--output-dir", str(tmp_path), "--device", "cpu", *flags]
    return main(argv)


def test_cli_default_prints_the_choice_records_it_and_renders_the_named_recipe(tmp_path, capsys):
    """visualize.py without --recipe on a class logit: one line naming the recipe, config.yaml's resolved.recipe,
    and the PNG FeatureViz makes with that recipe's settings."""
    assert run(tmp_path / "auto", "--objective", "fc8:2", "--seed", "3") == 0
    out = capsys.readouterr().out
    row = AUTO_TABLE["class logit"]
    chosen, r = row.recipe, RECIPES[row.recipe]
    settled = choose("class logit").settle_fit("the model takes only its own size")   # tiny_test flattens its grid
    assert out.splitlines()[0] == settled.line() and out.count("recipe auto:") == 1
    config = yaml.safe_load((tmp_path / "auto" / "viz_config.yaml").read_text())
    assert config["recipe"] == "auto" and config["lr"] is None and config["fit"] is None
    assert config["resolved"]["recipe"] == {**settled.record(),
                                            "settings": {"param": r.param, "views": r.views,
                                                         "transforms": r.transforms, "decay_power": r.decay_power,
                                                         "lr": r.lr}}
    assert config["resolved"]["recipe"]["why"] == row.why
    assert run(tmp_path / "named", "--objective", "fc8:2", "--seed", "3", "--recipe", chosen) == 0
    assert "recipe auto" not in capsys.readouterr().out
    named = yaml.safe_load((tmp_path / "named" / "viz_config.yaml").read_text())
    assert "recipe" not in named["resolved"]
    auto_png = load_image_rgb(str(tmp_path / "auto" / "viz_step3_0.png"))
    assert np.array_equal(auto_png, load_image_rgb(str(tmp_path / "named" / "viz_step3_0.png")))
    param_f = (lambda: maco_image(8)) if r.param == "maco" else (lambda: get_image(8, decay_power=r.decay_power))
    fv = FeatureViz(make_tiny(), "fc8:2")
    (images,) = fv.visualize(param_f, thresholds=[3], lr=r.lr, seed=3, transforms=r.transform_list(), views=r.views)
    assert np.array_equal(auto_png, to_uint8(images[0]))


def test_cli_neuron_and_fourier_flags(tmp_path, capsys):
    assert run(tmp_path / "n", "--objective", "conv1:1:3:3") == 0
    assert capsys.readouterr().out.startswith(choose("neuron").line())
    assert run(tmp_path / "d", "--objective", "fc8:2", "--decay-power", "2") == 0
    assert capsys.readouterr().out.startswith("recipe auto: lucid for a class logit")   # a Fourier row: kept
    config = yaml.safe_load((tmp_path / "d" / "viz_config.yaml").read_text())
    assert config["resolved"]["recipe"]["settings"]["decay_power"] == 2.0


def test_cli_bad_input_prints_no_choice(tmp_path, capsys):
    assert run(tmp_path, "--objective", "fc9:2") == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1


OWN_ROW = AutoRow("lucid", "measured", own_size=True)


@pytest.mark.parametrize("flags, fed", [
    ((), "own"),
    (("--fit", "crop"), "fit given"),
    (("--no-resize",), "own"),                               # given: the user's own size, as the row's
    (("--views", "2"), "2 views per step share one forward pass"),
])
def test_own_size_row_feeds_the_image_at_its_size_unless_something_pins_it(tmp_path, capsys, monkeypatch, flags, fed):
    """A model that takes any size (global pooling): the row's own size, unless a flag pins the size; the image is
    the one --no-resize makes."""
    monkeypatch.setitem(AUTO_TABLE, "class logit", OWN_ROW)
    any_size = ["--model", "tests.models.user_models:tiny_sequential", "--size", "32", "--objective", "4:1"]
    assert run(tmp_path, *any_size, *flags) == 0
    line = capsys.readouterr().out.splitlines()[0]
    record = yaml.safe_load((tmp_path / "viz_config.yaml").read_text())["resolved"]["recipe"]
    if fed == "own":
        assert line.startswith("recipe auto: lucid for a class logit, fed at its own size (measured;")
        assert record["fed"] == "at its own size" and "cropped_because" not in record
        assert run(tmp_path / "named", *any_size, "--recipe", "lucid", "--no-resize") == 0
        assert np.array_equal(load_image_rgb(str(tmp_path / "viz_step3_0.png")),
                              load_image_rgb(str(tmp_path / "named" / "viz_step3_0.png")))
    else:
        assert f"cropped to the model's size ({fed})" in line
        assert record == {**record, "fed": "cropped to the model's size", "cropped_because": fed}


def test_settle_fit_crops_for_a_model_that_takes_only_its_size():
    job = VisualizeJob(model="tiny_test", objective="fc8:2")
    job.auto_choice = auto_recipe.AutoChoice("class logit", "lucid", "measured", own_size=True)
    job.settle_fit(lambda: False)
    assert job.resize_to_contract and job.auto_choice.cropped_because == "the model takes only its own size"
    job.auto_choice = auto_recipe.AutoChoice("class logit", "lucid", "measured", own_size=True)
    job.settle_fit(lambda: True)
    assert not job.resize_to_contract and job.auto_choice.own_size


def test_takes_other_sizes_runs_the_model_at_two_other_sizes():
    assert takes_other_sizes(tiny_sequential(), (8, 8))        # global pooling
    assert not takes_other_sizes(make_tiny(), (8, 8))          # flattens its 8 x 8 grid


def test_a_token_model_is_cropped_even_where_it_takes_other_sizes():
    job = VisualizeJob(model="tiny_test", objective="fc8:2")
    job.settle_recipe({"fc8": NC, "blocks.1": LAYOUTS["blocks.1"]})
    job.auto_choice = auto_recipe.AutoChoice("class logit", "lucid", "measured", own_size=True)
    job.settle_fit(lambda: True)
    assert job.resize_to_contract and job.auto_choice.cropped_because.startswith("a token model")
