"""visualize.py's command line, run in-process through main() on the tiny fixed-weight model."""

import os

import numpy as np
import pytest
import torch
import yaml

from dvtoolbox.cli.visualize import PARAMS, get_parser, main
from dvtoolbox.io.images import load_image_rgb, to_uint8
from dvtoolbox.optvis import FeatureViz, get_image
from tests.conftest import make_tiny


@pytest.fixture(autouse=True)
def _one_thread(_seed_everything):
    torch.set_num_threads(1)


def run(tmp_path, *flags):
    device = [] if "--device" in flags else ["--device", "cpu"]  # the CLI's own default is cuda when present
    argv = ["--model", "tiny_test", "--objective", "fc8:2", "--steps", "3", "--output-dir", str(tmp_path / "out"),
            *device, *flags]
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
    assert config["resolved"] == {"device": "cpu", "size": [8, 8]}
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


@pytest.mark.parametrize("param", sorted(PARAMS))
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
    assert out[0].split() == ["conv1", "4x8x8"] and ["fc8", "5"] in [line.split() for line in out]
    assert main(["--list-models"]) == 0
    assert "tiny_test" in capsys.readouterr().out.split()


def test_help_shows_defaults():
    text = " ".join(get_parser().format_help().split())
    for expected in ("(default: 512)", "(default: fft)", "(default: 0.05)", "(default: visualize_results)",
                     "(default: efficientnet_lite0)", "(default: standard)"):
        assert expected in text, expected


BAD = [
    (["--objective", "fc8:2 *"], "at the end"),
    (["--objective", "fc9:2"], "fc9"),
    (["--objective", "fc8:2 * fc8:1"], "cannot be multiplied"),
    (["--objective", "import os"], "cannot read"),
    (["--param", "cppn"], "invalid choice"),
    (["--steps", "0"], "--steps must be >= 1"),
    (["--thresholds", "4,2"], "strictly increasing"),
    (["--thresholds", "a,b"], "comma-separated integers"),
    (["--batch", "0"], "--batch must be >= 1"),
    (["--size", "-3"], "--size must be >= 1"),
    (["--lr", "0"], "--lr must be > 0"),
    (["--decay", "0.1"], "need --param dvt"),
    (["--param", "dvt", "--decay", "2"], "decay must be <= 1"),
    (["--param", "dvt", "--small-norm-percentile", "100"], "small_norm_percentile must be in"),
    (["--lr-policy", "progress"], "needs lr_params max_lr, desired_prog"),
    (["--lr-params", "{'lr': 1}"], "--lr-params needs --lr-policy"),
    (["--lr-policy", "constant", "--lr-params", "__import__('os')"], "not a Python literal"),
    (["--device", "tpu"], "--device must be cpu, cuda or cuda:N"),
    (["--model", "nope"], "unknown model 'nope'"),
    (["--transforms", "lucent"], "invalid choice"),
    (["--steps", "x"], "invalid int value"),
    (["--output-prefix", "a/b"], "--output-prefix must be a file name prefix"),
    (["--config", "/nonexistent.yaml"], "cannot read"),
]


@pytest.mark.parametrize("flags, message", BAD, ids=[" ".join(f) for f, _ in BAD])
def test_bad_input_is_one_line_and_exit_2_and_writes_nothing(tmp_path, capsys, flags, message):
    assert run(tmp_path, *flags) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("visualize.py: error: ") and message in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_run_is_reproducible(tmp_path):
    """Without transforms: grid_sample's CUDA backward (random_rotate) accumulates with atomics, so runs with the
    standard transforms may differ in the last bit on a GPU."""
    assert run(tmp_path, "--device", "cuda", "--output-prefix", "a", "--transforms", "none") == 0
    assert run(tmp_path, "--device", "cuda", "--output-prefix", "b", "--transforms", "none") == 0
    a, b = ((tmp_path / "out" / f"{p}_step3_0.png").read_bytes() for p in "ab")
    assert a == b
    assert yaml.safe_load((tmp_path / "out" / "a_config.yaml").read_text())["resolved"]["device"] == "cuda"
