"""visualize.py's command line, run in-process through main() on the tiny fixed-weight model."""

import os

import numpy as np
import pytest
import torch
import yaml

from dvtoolbox.cli import visualize as visualize_module
from dvtoolbox.optvis.job import pipeline as visualize_pipeline
from dvtoolbox.cli.visualize import get_parser, job_from_args, main
from dvtoolbox.optvis.job import PARAMETERISATIONS, alpha_kwargs
from dvtoolbox.io.images import load_image_rgb, load_image_rgba, to_uint8
from dvtoolbox.optvis import FeatureViz, get_image
from dvtoolbox.optvis.alpha import render_transparent
from tests.conftest import make_tiny
from tests.io.image_files import BAD_FILES, BAD_IDS, LIMIT
from tests.folder_state import folder_state


@pytest.fixture(autouse=True)
def _one_thread(_seed_everything):
    torch.set_num_threads(1)


def run(tmp_path, *flags):
    device = [] if "--device" in flags else ["--device", "cpu"]  # the CLI's own default is cuda when present
    # lucid's settings unless the test names a recipe or a config file (recipe auto: tests/optvis/test_auto_recipe.py)
    recipe = [] if "--recipe" in flags or "--config" in flags else ["--recipe", "lucid"]
    argv = ["--model", "tiny_test", "--objective", "fc8:2", "--steps", "3", "--output-dir", str(tmp_path / "out"),
            *device, *recipe, *flags]
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own errors (OneLineErrorParser: one line, status 2)
        return exc.code


def files(tmp_path):
    return sorted(os.listdir(tmp_path / "out"))


def test_run_writes_one_png_per_image_per_threshold_and_the_side_files(tmp_path, capsys):
    assert run(tmp_path, "--thresholds", "2,10", "--batch", "2") == 0
    assert files(tmp_path) == ["viz_config.yaml", "viz_info.txt", "viz_step02_0.png", "viz_step02_1.png",
                               "viz_step10_0.png", "viz_step10_1.png"]
    assert load_image_rgb(str(tmp_path / "out" / "viz_step10_1.png")).shape == (8, 8, 3)
    config = yaml.safe_load((tmp_path / "out" / "viz_config.yaml").read_text())
    assert config["objective"] == "fc8:2" and config["thresholds"] == "2,10" and config["param"] == "fft"
    assert config["resolved"] == {"model": "tiny_test", "device": "cpu", "size": [8, 8], "engine": "eager",
                                  "precision": "float32"}
    info = (tmp_path / "out" / "viz_info.txt").read_text()
    assert info.startswith("objective: channel('fc8', 2)\ndevice: cpu\n")
    assert "objective at step 10: " in info
    assert "wrote 6 files" in capsys.readouterr().out


def test_png_is_the_library_image(tmp_path):
    """The CLI's PNG is exactly FeatureViz.visualize's image with the same settings, as uint8."""
    assert run(tmp_path, "--seed", "4") == 0
    fv = FeatureViz(make_tiny(), "fc8:2")
    (images,) = fv.visualize(lambda: get_image(w=8, h=8), thresholds=[3], lr=0.05, seed=4)
    png = load_image_rgb(str(tmp_path / "out" / "viz_step3_0.png"))
    np.testing.assert_array_equal(png, to_uint8(images[0]))


def test_decay_power_reaches_the_fourier_image(tmp_path):
    """--decay-power 2 is get_image(decay_power=2): the same PNG as the library's, and not lucid's decay 1 image."""
    assert run(tmp_path, "--seed", "4", "--decay-power", "2", "--lr", "0.5") == 0
    fv = FeatureViz(make_tiny(), "fc8:2")
    png = load_image_rgb(str(tmp_path / "out" / "viz_step3_0.png"))
    for decay_power, same in ((2.0, True), (1.0, False)):
        (images,) = fv.visualize(lambda: get_image(w=8, h=8, decay_power=decay_power), thresholds=[3], lr=0.5, seed=4)
        assert np.array_equal(png, to_uint8(images[0])) == same


@pytest.mark.parametrize("flags, config, expected", [
    ([], None, (None, None, None, None)),         # auto: the job fills them once the model says what fc8 is
    (["--recipe", "lucid"], None, (1, "standard", 1.0, 0.05)),
    (["--recipe", "class"], None, (4, "strong", 2.0, 0.0015)),
    (["--recipe", "class", "--lr", "0.01", "--views", "2"], None, (2, "strong", 2.0, 0.01)),
    ([], {"recipe": "class"}, (4, "strong", 2.0, 0.0015)),
    ([], {"recipe": "class", "lr": 0.003}, (4, "strong", 2.0, 0.003)),
    (["--recipe", "lucid"], {"recipe": "class"}, (1, "standard", 1.0, 0.05)),
])
def test_recipe_sets_defaults_that_config_and_flags_override(tmp_path, flags, config, expected):
    if config is not None:
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
        flags = flags + ["--config", str(tmp_path / "c.yaml")]
    args = visualize_module.parse_args(flags)
    assert (args.views, args.transforms, args.decay_power, args.lr) == expected


@pytest.mark.parametrize("recipe, flags, warned", [
    ("class", ["--recipe", "class"], True), ("class", ["--recipe", "class", "--thresholds", "2,384"], False),
    ("maco", ["--recipe", "maco"], True), ("maco", ["--recipe", "maco", "--steps", "384"], False),
    ("class", [], False)])
def test_too_few_steps_for_the_recipe_is_a_warning(tmp_path, caplog, recipe, flags, warned):
    assert run(tmp_path, *flags) == 0
    assert (f"--recipe {recipe} was measured at 384 steps or more; this run takes" in caplog.text) == warned


def test_unknown_recipe_in_config_is_one_line(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("recipe: fancy\n")
    assert run(tmp_path, "--config", str(tmp_path / "c.yaml")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "recipe must be one of auto, lucid, class, maco, accent, got 'fancy'" in err, err


def test_class_recipe_png_is_the_library_recipe(tmp_path):
    """--recipe class renders what FeatureViz renders with RECIPES["class"]'s settings."""
    from dvtoolbox.optvis.recipes import RECIPES

    assert run(tmp_path, "--seed", "2", "--recipe", "class", "--size", "12") == 0
    r = RECIPES["class"]
    fv = FeatureViz(make_tiny(), "fc8:2")
    (images,) = fv.visualize(lambda: get_image(w=12, h=12, decay_power=r.decay_power), thresholds=[3], lr=r.lr,
                             transforms=r.transform_list(), views=r.views, seed=2)
    np.testing.assert_array_equal(load_image_rgb(str(tmp_path / "out" / "viz_step3_0.png")), to_uint8(images[0]))
    config = yaml.safe_load((tmp_path / "out" / "viz_config.yaml").read_text())
    assert config["recipe"] == "class" and config["views"] == 4 and config["decay-power"] == 2.0


def test_same_seed_same_png_bytes_other_seed_other_bytes(tmp_path):
    assert run(tmp_path, "--output-prefix", "a") == 0
    assert run(tmp_path, "--output-prefix", "b") == 0
    assert run(tmp_path, "--output-prefix", "c", "--seed", "1") == 0
    a, b, c = ((tmp_path / "out" / f"{p}_step3_0.png").read_bytes() for p in "abc")
    assert a == b and a != c


def test_refuses_to_overwrite_without_brave_before_any_work_and_brave_overwrites(tmp_path, capsys):
    assert run(tmp_path) == 0
    png = tmp_path / "out" / "viz_step3_0.png"
    before = (png.read_bytes(), png.stat().st_mtime_ns)
    capsys.readouterr()
    assert run(tmp_path, "--seed", "1") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cowardly refusing to overwrite" in err and "--brave" in err
    assert (png.read_bytes(), png.stat().st_mtime_ns) == before
    assert run(tmp_path, "--seed", "1", "--brave") == 0
    assert png.read_bytes() != before[0]
    assert not [p for p in files(tmp_path) if p.startswith(".")]  # no temporary files left


@pytest.mark.parametrize("param", sorted(PARAMETERISATIONS))
def test_every_parameterisation_runs(tmp_path, param):
    extra = ["--lr", "2", "--decay", "0.01", "--blur-radius", "0.5", "--blur-every", "2",
             "--px-abs-benefit-percentile", "50", "--optimizer", "sgd"] if param == "dvt" else []
    assert run(tmp_path, "--param", param, "--transforms", "none", "--size", "12", *extra) == 0
    assert load_image_rgb(str(tmp_path / "out" / "viz_step3_0.png")).shape == (12, 12, 3)


def test_lr_policy_and_config_file(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("steps: 2\nlr-policy: progress\nlr-params: {max_lr: 1.0, desired_prog: 0.5}\n")
    assert run(tmp_path, "--config", str(config), "--thresholds", "1,2") == 0
    assert "viz_step2_0.png" in files(tmp_path)
    saved = yaml.safe_load((tmp_path / "out" / "viz_config.yaml").read_text())
    assert saved["lr-policy"] == "progress" and saved["config-file"] == str(config)


def test_list_layers_and_models(capsys):
    assert main(["--model", "tiny_test", "--list-layers"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["conv1", "4x8x8", "NCHW"] and ["fc8", "5", "NC"] in [line.split() for line in out]
    assert main(["--list-models"]) == 0
    assert "tiny_test" in capsys.readouterr().out.split()


def test_help_shows_defaults():
    text = " ".join(get_parser().format_help().split())
    for expected in ("(default: 512)", "(default: fft)", "(default: 0.05)", "(default: visualize_results)",
                     "(default: efficientnet_lite0)", "(default: standard)"):
        assert expected in text, expected


BIG = "99999999999999999999999"
# (flags, the line's expected text (naming the flag)[, files to put in the folder first: name -> text])
BAD = [
    (["--no-resize", "--size", "12"], "--no-resize: the model cannot take 12x12 images"),
    (["--objective", "fc8:2 *"], "at the end"),
    (["--objective", "fc9:2"], "fc9"),
    (["--objective", "fc8:2 * fc8:1"], "cannot be multiplied"),
    (["--objective", "import os"], "cannot read"),
    (["--param", "cppn"], "argument --param: invalid choice"),
    (["--steps", "0"], "--steps must be an integer in [1, 100000000], got 0"),
    (["--steps", BIG], f"--steps must be an integer in [1, 100000000], got {BIG}"),
    (["--thresholds", "4,2"], "--thresholds must be strictly increasing"),
    (["--thresholds", "a,b"], "--thresholds must be comma-separated integers"),
    (["--thresholds", f"1,{BIG}"], "--thresholds must be strictly increasing integers in [1, 100000000]"),
    (["--thresholds", "0,2"], "--thresholds must be strictly increasing integers in [1, 100000000]"),
    (["--batch", "0"], "--batch must be an integer in [1, 4096], got 0"),
    (["--batch", "9999999999"], "--batch must be an integer in [1, 4096], got 9999999999"),
    (["--views", "0"], "--views must be an integer in [1, 4096], got 0"),
    (["--views", "99999999999"], "--views must be an integer in [1, 4096]"),
    (["--size", "-3"], "--size must be an integer in [1, 8192], got -3"),
    (["--size", "100000"], "--size must be an integer in [1, 8192], got 100000"),
    (["--size", BIG], "--size must be an integer in [1, 8192]"),
    (["--seed", "-1"], "--seed must be an integer in [0, 18446744073709551615], got -1"),
    (["--seed", BIG], "--seed must be an integer in [0, 18446744073709551615]"),
    (["--lowres-factor", "0", "--param", "lowres"], "--lowres-factor must be an integer >= 1, got 0"),
    (["--lr", "0"], "--lr must be > 0"),
    (["--lr", "nan"], "--lr must be a finite number, got nan"),
    (["--lr", "inf"], "--lr must be a finite number, got inf"),
    (["--lr", "1e400"], "--lr must be a finite number, got inf"),
    (["--decay-power", "-1"], "--decay-power must be >= 0 and finite"),
    (["--decay-power", "nan"], "--decay-power must be >= 0 and finite"),
    (["--decay-power", "inf"], "--decay-power must be >= 0 and finite, got inf"),
    (["--decay-power", "2", "--param", "pixel"], "--decay-power shapes the Fourier spectrum: it needs --param fft"),
    (["--decay", "0.1"], "need --param dvt"),
    (["--param", "dvt", "--decay", "2"], "--decay must be a finite number in [0, 1], got 2.0"),
    (["--param", "dvt", "--decay", "nan"], "--decay must be a finite number in [0, 1], got nan"),
    (["--param", "dvt", "--blur-radius", "inf", "--blur-every", "1"], "--blur-radius must be a finite number in [0, "
                                                                      "8192], got inf"),
    (["--param", "dvt", "--blur-every", "-1"], "--blur-every must be an integer >= 0, got -1"),
    (["--param", "dvt", "--small-norm-percentile", "100"], "--small-norm-percentile must be in [0, 100)"),
    (["--param", "dvt", "--px-benefit-percentile", "nan"], "--px-benefit-percentile must be a finite number >= 0"),
    (["--lr-policy", "progress"], "--lr-policy 'progress' needs --lr-params max_lr, desired_prog"),
    (["--lr-params", "{'lr': 1}"], "--lr-params needs --lr-policy"),
    (["--lr-policy", "constant", "--lr-params", "__import__('os')"], "--lr-params: \"__import__('os')\" is not a "
                                                                     "Python literal"),
    (["--lr-policy", "constant", "--lr-params", "{'lr': 1e400}"], "--lr-params must be a dict of names to finite "
                                                                  "numbers"),
    (["--lr-policy", "progress", "--lr-params", "{'max_lr': 0, 'desired_prog': 1}"],
     "--lr-params for --lr-policy 'progress' must be finite and > 0, got max_lr=0"),
    (["--accent-coef", "nan"], "--accent-coef needs --start-image"),
    (["--device", "tpu"], "--device must be cpu, cuda or cuda:N"),
    (["--model", "nope"], "--model 'nope' is unknown"),
    (["--transforms", "lucent"], "argument --transforms: invalid choice"),
    (["--steps", "x"], "argument --steps: invalid int value"),
    (["--output-prefix", "a/b"], "--output-prefix must be a file name prefix"),
    (["--config", "/nonexistent.yaml"], "--config: cannot read"),
    (["--recipe", "fancy"], "argument --recipe: invalid choice"),
    (["--model", "tests.models.user_models_broken:factory"], "--model tests.models.user_models_broken:factory: cannot "
     "import tests.models.user_models_broken: RuntimeError: this module is broken on import"),
    (["--model", "tests.models.user_models:raises"], "--model tests.models.user_models:raises: raises() raised "
     "ValueError: no weights for this size"),
    (["--model", "tests.models.user_models:needs_args"], "needs_args() raised TypeError: needs_args() missing 1 "
     "required positional argument"),
    (["--config", os.path.join(os.path.dirname(__file__), "..", "data", "trusts.yaml")],
     "sets trust_model_file: it is an opt-in to run code, given only on the command line"),
    (["--input-mean", "(1e400,0,0)"], "--input-mean must be 3 finite numbers (RGB, 0..1 scale), got '(1e400,0,0)'"),
    (["--input-std", "(0.2,-1e400,0.2)"], "--input-std must be 3 finite numbers"),
    (["--input-mean", "(nan,0,0)"], "--input-mean: '(nan,0,0)' is not a Python literal"),
    # from a YAML config
    (["--config", "c.yaml"], "--input-mean must be 3 finite numbers (RGB, 0..1 scale), got [nan, 0.5, 0.5]",
     {"c.yaml": "input-mean: [.nan, 0.5, 0.5]\n"}),
    (["--config", "c.yaml"], "--input-std must be 3 finite numbers", {"c.yaml": "input-std: [.inf, 1, 1]\n"}),
    (["--config", "c.yaml"], "--lr must be a finite number, got inf", {"c.yaml": "lr: .inf\n"}),
    (["--config", "c.yaml"], "--decay-power must be >= 0 and finite, got nan", {"c.yaml": "decay-power: .nan\n"}),
    (["--config", "c.yaml", "--param", "dvt"], "--decay must be a finite number in [0, 1], got nan",
     {"c.yaml": "decay: .nan\n"}),
    (["--config", "c.yaml"], "--size must be an integer in [1, 8192], got 100000", {"c.yaml": "size: 100000\n"}),
    # --layout: malformed, and not fitting the layer it names (checked before any file)
    (["--layout", "fc8=NTC:grid=14x"], "--layout 'fc8=NTC:grid=14x': grid is HxW, two integers >= 1"),
    (["--layout", "fc8=NTC:grid=x14"], "--layout 'fc8=NTC:grid=x14': grid is HxW"),
    (["--layout", "fc8=NTC:grid=0x0"], "--layout 'fc8=NTC:grid=0x0': grid is HxW"),
    (["--layout", "fc8=NTC:prefix="], "--layout 'fc8=NTC:prefix=': prefix is P, an integer >= 0"),
    (["--layout", f"fc8=NTC:prefix={BIG}"], "prefix is P, an integer >= 0 (at most 1000000)"),
    (["--layout", "fc8=NTC:grid=2x2:grid=2x2"], "only NTC takes options, each at most once"),
    (["--layout", "fc8=NC", "--layout", "fc8=NCHW"], "--layout gives layer 'fc8' twice"),
    (["--layout", "fc9=NC"], "--layout: 'fc9' is not a layer of the model"),
    (["--layout", "conv1=NTC:grid=3x3", "--objective", "conv1:1"], "--layout: layer 'conv1' is declared NTC (prefix "
                                                                  "0, grid 3x3) but its output has shape (1, 4, 8, 8)"),
    (["--layout", "conv1=NC", "--objective", "conv1:1"], "--layout: layer 'conv1' is declared NC but its output has "
                                                         "shape (1, 4, 8, 8)"),
    (["--layout", "conv1=NC"], "--layout: layer 'conv1' is declared NC"),
    (["--layout", "fc8=NHWC"], "--layout: layer 'fc8' is declared NHWC but its output has shape (1, 5)"),
]


def _bad_id(row):
    return " ".join(row[0]) + (" " + " ".join(row[2].values()).strip() if len(row) > 2 else "")


@pytest.mark.parametrize("row", BAD, ids=[_bad_id(row) for row in BAD])
def test_bad_input_is_one_line_and_exit_2_and_writes_nothing(tmp_path, capsys, monkeypatch, row):
    flags, message, files = (tuple(row) + ({},))[:3]
    monkeypatch.chdir(tmp_path)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    before = folder_state(tmp_path)
    assert run(tmp_path, *flags) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("visualize.py: error: ") and message in err, err
    assert "Traceback" not in err and folder_state(tmp_path) == before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_run_is_reproducible(tmp_path):
    """Without transforms: grid_sample's CUDA backward (random_rotate) accumulates with atomics, so runs with the
    standard transforms may differ in the last bit on a GPU."""
    assert run(tmp_path, "--device", "cuda", "--output-prefix", "a", "--transforms", "none") == 0
    assert run(tmp_path, "--device", "cuda", "--output-prefix", "b", "--transforms", "none") == 0
    a, b = ((tmp_path / "out" / f"{p}_step3_0.png").read_bytes() for p in "ab")
    assert a == b
    assert yaml.safe_load((tmp_path / "out" / "a_config.yaml").read_text())["resolved"]["device"] == "cuda"


# ------------------------------------------------------------------------------------------------ --alpha

ALPHA_FILES = ["viz_config.yaml", "viz_info.txt", "viz_step2_0_checker.png", "viz_step2_0_rgba.png",
               "viz_step2_0_white.png", "viz_step3_0_background.png", "viz_step3_0_checker.png",
               "viz_step3_0_rgba.png", "viz_step3_0_white.png"]
ALPHA_RUNS = {  # flags -> the same call of the library
    "adversarial image, defaults": (
        ["--background", "image", "--adversarial-bg"],
        dict(background="image", adversarial=True, alpha_target=0.25, alpha_coef=1e4, jitter_n=2, transforms=None)),
    "none, other knobs": (
        ["--background", "none", "--alpha-target", "0.4", "--alpha-coef", "100", "--alpha-jitter", "1",
         "--transforms", "none", "--lr", "0.1"],
        dict(background="none", adversarial=False, alpha_target=0.4, alpha_coef=100.0, jitter_n=1, transforms=[],
             lr=0.1)),
}


def alpha_run(tmp_path, *flags):
    return run(tmp_path, "--alpha", "--size", "20", "--thresholds", "2,3", "--seed", "5", *flags)


def png_colour_type(path):
    """The IHDR colour type byte of a PNG file: 6 = RGBA (8-bit), 2 = RGB."""
    with open(path, "rb") as f:
        data = f.read(26)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return data[25]


def hand_checkerboard(h, w):
    """(h, w, 1): 1.0 where (y // 8 + x // 8) is even (the top left), 0.8 elsewhere."""
    y, x = np.mgrid[:h, :w]
    return np.where((y // 8 + x // 8) % 2 == 0, 1.0, 0.8)[:, :, None]


def assert_png_close(path, expected01):
    """The PNG (RGB) equals floor(255 * expected) to one grey level (float32 vs float64 rounding)."""
    png = load_image_rgb(str(path)).astype(int)
    ref = np.clip(np.floor(255.0 * expected01), 0, 255).astype(int)
    assert png.shape == ref.shape and np.abs(png - ref).max() <= 1


@pytest.mark.parametrize("name", sorted(ALPHA_RUNS))
def test_alpha_files_are_the_library_result_and_its_composites(tmp_path, name, capsys):
    flags, call = ALPHA_RUNS[name]
    assert alpha_run(tmp_path, *flags) == 0
    expected_files = [f for f in ALPHA_FILES if call["background"] != "none" or "background" not in f]
    assert files(tmp_path) == expected_files
    assert f"wrote {len(expected_files)} files" in capsys.readouterr().out
    result = render_transparent(make_tiny(), "fc8:2", w=20, thresholds=[2, 3], seed=5, device="cpu",
                                resize_to_contract=True, **{"lr": 0.05, **call})
    out = tmp_path / "out"
    for t, snapshot in zip((2, 3), result.snapshots):
        rgba = snapshot[0].astype(np.float64)                                   # (20, 20, 4) in [0, 1]
        path = out / f"viz_step{t}_0_rgba.png"
        assert png_colour_type(path) == 6                                       # a real alpha channel
        png = load_image_rgba(str(path))
        np.testing.assert_array_equal(png, to_uint8(snapshot[0]))               # same bits as the library
        assert np.abs(png[..., 3] / 255.0 - rgba[..., 3]).max() <= 1 / 255
        assert 0 < png[..., 3].min() and png[..., 3].max() < 255                # neither opaque nor empty
        rgb, a = rgba[..., :3], rgba[..., 3:]
        assert_png_close(out / f"viz_step{t}_0_checker.png", rgb * a + hand_checkerboard(20, 20) * (1 - a))
        assert_png_close(out / f"viz_step{t}_0_white.png", rgb * a + (1 - a))
        assert png_colour_type(out / f"viz_step{t}_0_white.png") == 2
    if call["background"] != "none":
        np.testing.assert_array_equal(load_image_rgb(str(out / "viz_step3_0_background.png")),
                                      to_uint8(result.backgrounds[0]))
    record = {"background": call["background"], "adversarial": call["adversarial"],
              "alpha-target": call["alpha_target"], "alpha-coef": call["alpha_coef"],
              "alpha-jitter": call["jitter_n"], "alpha-mean": result.alpha_means[0]}
    config = yaml.safe_load((out / "viz_config.yaml").read_text())
    assert config["alpha"] is True and config["resolved"] == {"model": "tiny_test", "device": "cpu", "size": [20, 20],
                                                           "engine": "eager", "precision": "float32",
                                                           "alpha": record}
    info = (out / "viz_info.txt").read_text()
    assert f"objective at step 3: {result.history[2]:.6g}\n" in info
    assert info.endswith(f"alpha mean: {result.alpha_means[0]:.6g}\n")
    assert f"alpha: background {call['background']}" in info and f"target {call['alpha_target']:g}" in info


def test_alpha_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    assert alpha_run(tmp_path, "--output-prefix", "a") == 0
    assert alpha_run(tmp_path, "--output-prefix", "b") == 0
    assert alpha_run(tmp_path, "--output-prefix", "c", "--seed", "6") == 0
    for kind in ("rgba", "checker", "white", "background"):
        a, b, c = ((tmp_path / "out" / f"{p}_step3_0_{kind}.png").read_bytes() for p in "abc")
        assert a == b and a != c, kind


def test_alpha_kwargs_pass_every_knob():
    args = get_parser().parse_args(["--alpha", "--objective", "fc8:1:0:0", "--background", "offset-image",
                                    "--adversarial-bg", "--alpha-target", "0.3", "--alpha-coef", "50",
                                    "--alpha-jitter", "3", "--size", "16", "--thresholds", "4,9", "--lr", "0.2",
                                    "--seed", "7", "--no-resize"])
    assert alpha_kwargs(job_from_args(args), make_tiny()) == dict(
        objective="fc8:1:0:0", background="offset-image", adversarial=True, alpha_target=0.3, alpha_coef=50.0,
        w=16, jitter_n=3, thresholds=[4, 9], lr=0.2, transforms=None, seed=7, resize_to_contract=False)
    defaults = alpha_kwargs(job_from_args(get_parser().parse_args(["--alpha", "--objective", "fc8:1"])), make_tiny())
    assert (defaults["background"], defaults["adversarial"], defaults["alpha_target"], defaults["alpha_coef"],
            defaults["jitter_n"], defaults["w"], defaults["resize_to_contract"]) == ("color", False, 0.25, 1e4, 2, 8,
                                                                                    True)


@pytest.mark.parametrize("existing", ALPHA_FILES)
def test_alpha_refuses_to_overwrite_any_of_its_files_before_any_work(tmp_path, capsys, existing):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / existing).write_bytes(b"keep")
    assert alpha_run(tmp_path, "--adversarial-bg") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cowardly refusing to overwrite {tmp_path / 'out' / existing}" in err
    assert files(tmp_path) == [existing] and (tmp_path / "out" / existing).read_bytes() == b"keep"
    assert alpha_run(tmp_path, "--adversarial-bg", "--brave") == 0
    assert files(tmp_path) == ALPHA_FILES


def test_help_shows_alpha_defaults():
    text = " ".join(get_parser().format_help().split())
    for expected in ("--alpha ", "(default: color)", "(default: allied)", "(default: 0.25)", "(default: 10000)",
                     "(default: 2)", "none,noise,image,offset-image,color"):
        assert expected in text, expected


BAD_ALPHA = [
    (["--background", "color"], "--background needs --alpha"),
    (["--adversarial-bg"], "--adversarial-bg needs --alpha"),
    (["--alpha-target", "0.3"], "--alpha-target needs --alpha"),
    (["--alpha-coef", "10"], "--alpha-coef needs --alpha"),
    (["--alpha-jitter", "1"], "--alpha-jitter needs --alpha"),
    (["--alpha", "--background", "checker"], "invalid choice"),
    (["--alpha", "--alpha-target", "0"], "--alpha-target must be in (0, 1), got 0.0"),
    (["--alpha", "--alpha-target", "1"], "--alpha-target must be in (0, 1), got 1.0"),
    (["--alpha", "--alpha-target", "-0.5"], "--alpha-target must be in (0, 1)"),
    (["--alpha", "--alpha-target", "nan"], "--alpha-target must be in (0, 1)"),
    (["--alpha", "--alpha-coef", "-1"], "--alpha-coef must be >= 0"),
    (["--alpha", "--alpha-coef", "inf"], "--alpha-coef must be >= 0 and finite"),
    (["--alpha", "--alpha-jitter", "-1"], "--alpha-jitter must be >= 0"),
    (["--alpha", "--alpha-jitter", "8"], "--alpha-jitter must be smaller than the image size 8"),
    (["--alpha", "--background", "none", "--adversarial-bg"], "--adversarial-bg needs a --background other"),
    (["--alpha", "--param", "pixel"], "--alpha cannot be combined with --param pixel"),
    (["--alpha", "--param", "dvt"], "--alpha cannot be combined with --param dvt"),
    (["--alpha", "--no-decorrelate"], "--alpha cannot be combined with --no-decorrelate"),
    (["--alpha", "--batch", "2"], "--alpha cannot be combined with --batch 2"),
    (["--alpha", "--optimizer", "sgd"], "--alpha cannot be combined with --optimizer sgd"),
    (["--alpha", "--lr-policy", "constant"], "--alpha cannot be combined with --lr-policy"),
    (["--alpha", "--decay-power", "2"], "--alpha cannot be combined with --decay-power 2.0"),
    (["--alpha", "--recipe", "class"], "--alpha cannot be combined with --recipe class"),
    (["--alpha", "--decay", "0.01"], "--alpha cannot be combined with the DVT regularizers"),
    (["--alpha", "--param", "dvt", "--blur-radius", "1", "--blur-every", "2"], "--alpha cannot be combined with"),
    (["--alpha", "--objective", "fc8:2 + fc8:1"], "--alpha needs a single unit"),
    (["--alpha", "--objective", "2 * fc8:2"], "--alpha needs a single unit"),
    (["--alpha", "--objective", "fc8:2@0"], "--alpha needs a single unit"),
    (["--alpha", "--objective", "fc9:2"], "fc9"),
]


@pytest.mark.parametrize("flags, message", BAD_ALPHA, ids=[" ".join(f) for f, _ in BAD_ALPHA])
def test_bad_alpha_input_is_one_line_and_exit_2_and_writes_nothing(tmp_path, capsys, flags, message):
    assert run(tmp_path, *flags) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("visualize.py: error: ") and message in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags, expected", [([], True), (["--no-resize"], False)])
def test_no_resize_reaches_featureviz(tmp_path, monkeypatch, flags, expected):
    seen = []

    class Spy(FeatureViz):
        def __init__(self, *args, **kwargs):
            seen.append(kwargs["resize_to_contract"])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(visualize_pipeline, "FeatureViz", Spy)
    assert run(tmp_path, "--transforms", "none", *flags) == 0
    assert seen == [expected]


# ------------------------------------------------------------------------------------------------ --start-image files
@pytest.mark.parametrize("make, message", BAD_FILES, ids=BAD_IDS)
def test_a_bad_start_image_file_is_one_line_and_exit_2_and_writes_nothing(tmp_path, capsys, make, message):
    photo = str(make(tmp_path))
    assert run(tmp_path, "--start-image", photo) == 2
    err = capsys.readouterr().err
    expected = message if os.path.isfile(photo) else "no such file"  # the job's own check of the paths
    assert err.count("\n") == 1 and err.startswith("visualize.py: error: --start-image") and expected in err, err
    assert repr(photo) in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_visualize_py_refuses_a_decompression_bomb_start_image_in_one_line(tmp_path):
    """The script itself, in its own process (warnings are not errors there): exit 2, one line, nothing written."""
    import subprocess
    import sys

    from tests.io.image_files import bad_bomb_warning

    bomb = str(bad_bomb_warning(tmp_path))
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "visualize.py")
    done = subprocess.run([sys.executable, script, "--start-image", bomb, "--steps", "1", "--device", "cpu",
                           "--output-dir", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [f"visualize.py: error: --start-image: image {bomb!r} has 100000000 pixels, over Pillow's "
                                        f"decompression-bomb limit of {LIMIT} pixels (PIL.Image.MAX_IMAGE_PIXELS): "
                                        "give a smaller image"]
    assert not (tmp_path / "out").exists()
