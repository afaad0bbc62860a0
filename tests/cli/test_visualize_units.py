"""visualize.py --units: every channel of a layer or latent of a dictionary, one image each (optvis.job.units): with
batch 1 each unit's image is its single run's, values against the model's own numbers on the saved images, resume
equals an uninterrupted run and refuses other settings, one-line errors, the gallery page, torchrun."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from dvtoolbox.cli.visualize import main
from dvtoolbox.dictionaries import load_dictionary
from dvtoolbox.io.images import load_image_rgb
from tests.conftest import TINY_MEAN, make_tiny
from tests.folder_state import folder_state

SAE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "dictionaries", "saelens_topk")
TINY_VISUALIZE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny_visualize.py")
BASE = ["--model", "tiny_test", "--device", "cpu", "--steps", "3"]


@pytest.fixture(autouse=True)
def _one_thread(_seed_everything):
    torch.set_num_threads(1)


def run(out, *flags):
    try:
        return main([*BASE, "--output-dir", str(out), *flags])
    except SystemExit as exc:
        return exc.code


def image(out, name):
    return load_image_rgb(str(out / name))


def conv1_of(png: np.ndarray) -> torch.Tensor:
    """tiny_test's conv1 output (1, 4, 8, 8) on a saved image, its pixels made by hand: 0..255 RGB minus the
    mean, over 64 (TinyNet's forward)."""
    x = torch.from_numpy(png.astype(np.float32)).permute(2, 0, 1)[None] - torch.tensor(TINY_MEAN).view(1, 3, 1, 1)
    with torch.no_grad():
        return make_tiny().conv1(x / 64.0)


def info_value(out, prefix) -> float:
    return float(re.search(r"^value at step 3: (\S+)$", (out / f"{prefix}_info.txt").read_text(), re.M).group(1))


def test_batch_1_units_are_their_single_runs_and_values_are_the_layers(tmp_path, capsys):
    out = tmp_path / "units"
    assert run(out, "--objective", "conv1", "--units", "0:3", "--seed", "5") == 0
    assert "wrote 10 files" in capsys.readouterr().out  # 3 x (image, info, config) + index.html
    assert sorted(os.listdir(out)) == ["index.html"] + [f"viz_conv1_{k:04d}_{name}" for k in range(3)
                                                        for name in ("config.yaml", "info.txt", "step3_0.png")]
    for k in range(3):
        assert run(tmp_path / f"single{k}", "--objective", f"conv1:{k}", "--seed", "5") == 0
        unit = image(out, f"viz_conv1_{k:04d}_step3_0.png")
        np.testing.assert_array_equal(unit, image(tmp_path / f"single{k}", "viz_step3_0.png"))
        expected = float(conv1_of(unit)[0, k].mean())  # from the saved 8-bit image
        assert info_value(out, f"viz_conv1_{k:04d}") == pytest.approx(expected, abs=0.02)
    config = yaml.safe_load((out / "viz_conv1_0001_config.yaml").read_text())
    assert config["units"] == "0:3" and config["resolved"]["unit"]["objective"] == "conv1:1"
    assert config["resolved"]["unit"]["batch"] == [1]


def test_a_dictionarys_latents_batched(tmp_path):
    out = tmp_path / "out"
    assert run(out, "--dictionary", f"sae=conv1={SAE}", "--objective", "sae", "--units", "all", "--batch", "3",
               "--recipe", "maco") == 0
    d = load_dictionary(SAE)
    names = sorted(os.listdir(out))
    assert len([n for n in names if n.endswith("_transparency.png")]) == d.n_latents
    for k in range(d.n_latents):
        prefix = f"viz_sae_{k:04d}"
        layer = conv1_of(image(out, f"{prefix}_step3_0.png"))[0].movedim(0, -1)  # (8, 8, 4)
        expected = float(((layer.double() - d.b_dec.double()) @ d.W_enc[:, k].double()).mean() + d.b_enc[k])
        assert info_value(out, prefix) == pytest.approx(expected, abs=0.05)
        batch = yaml.safe_load((out / f"{prefix}_config.yaml").read_text())["resolved"]["unit"]["batch"]
        assert batch == [[0, 1, 2], [3, 4, 5], [6, 7]][k // 3]
    page = (out / "index.html").read_text()
    assert len(re.findall(r'<div class="cell" ', page)) == d.n_latents
    assert "value <b>" in page and 'src="viz_sae_0007_step3_0.png"' in page


def test_resume_after_an_interrupted_batch_equals_an_uninterrupted_run(tmp_path, capsys):
    flags = ["--objective", "conv1", "--units", "all", "--batch", "2"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert run(whole, *flags) == 0
    assert run(cut, *flags) == 0
    # as a kill in the middle of writing batch [2, 3] leaves it: unit 3 without its config.yaml, its image damaged
    os.remove(cut / "viz_conv1_0003_config.yaml")
    (cut / "viz_conv1_0003_step3_0.png").write_bytes(b"not a png")
    first = folder_state(cut)
    capsys.readouterr()
    assert run(cut, *flags, "--resume") == 0
    assert "wrote 7 files" in capsys.readouterr().out  # batch [2, 3] again, and the page
    after = folder_state(cut)
    assert all(after[f"viz_conv1_000{k}_{n}"] == first[f"viz_conv1_000{k}_{n}"] for k in (0, 1)
               for n in ("step3_0.png", "info.txt", "config.yaml"))  # batch [0, 1] untouched
    for k in range(4):
        np.testing.assert_array_equal(image(cut, f"viz_conv1_{k:04d}_step3_0.png"),
                                      image(whole, f"viz_conv1_{k:04d}_step3_0.png"))


def test_resume_with_other_settings_and_overwriting_are_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    assert run(out, "--objective", "conv1", "--units", "0:2") == 0
    before = folder_state(out)
    capsys.readouterr()
    assert run(out, "--objective", "conv1", "--units", "0:2", "--resume", "--seed", "3") == 2
    err = capsys.readouterr().err
    assert "unit 0" in err and "other settings (seed" in err and len(err.strip().splitlines()) == 1
    assert run(out, "--objective", "conv1", "--units", "0:3") == 2
    assert "brave" in capsys.readouterr().err
    assert folder_state(out) == before


@pytest.mark.parametrize("flags,message", [
    (["--objective", "conv1:2", "--units", "all"], "must name a layer or a dictionary alone"),
    (["--objective", "nope", "--units", "all"], "neither a layer of the model nor a dictionary"),
    (["--objective", "conv1", "--units", "2:9"], "unit 4 is out of range; the layer has 4 units"),
    (["--objective", "conv1", "--units", "x"], "units 'x': cannot read"),
    (["--objective", "conv1", "--resume"], "--resume needs --units"),
    (["--objective", "conv1", "--units", "all", "--alpha"], "--units cannot be combined with --alpha"),
    (["--text", "a flamingo", "--units", "all"], "not of a --text"),
])
def test_bad_units_are_one_line(tmp_path, capsys, flags, message):
    assert run(tmp_path / "out", *flags) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(sys.platform != "linux", reason="torchrun with gloo is tested on Linux")
def test_torchrun_two_ranks_write_every_unit_once_as_one_process_does(tmp_path):
    flags = [*BASE, "--objective", "conv1", "--units", "all", "--batch", "1"]
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29541",
            TINY_VISUALIZE, *flags, "--output-dir", str(tmp_path / "ranks")]
    done = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"),
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert run(tmp_path / "one", "--objective", "conv1", "--units", "all", "--batch", "1") == 0
    assert sorted(os.listdir(tmp_path / "ranks")) == sorted(os.listdir(tmp_path / "one"))
    for k in range(4):
        np.testing.assert_array_equal(image(tmp_path / "ranks", f"viz_conv1_{k:04d}_step3_0.png"),
                                      image(tmp_path / "one", f"viz_conv1_{k:04d}_step3_0.png"))
