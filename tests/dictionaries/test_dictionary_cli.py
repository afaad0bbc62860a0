"""--dictionary on both command lines (tiny_test; conv1 has 4 channels, fc8 5): a run with a SAELens folder and a
DICT#k objective, the same dictionary named by --config, and the bad inputs: exit 2, one line, nothing written."""

import os
import pickle

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

from dvtoolbox.cli import optimize_image, visualize
from tests.folder_state import folder_state

SAE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "dictionaries",
                   "saelens_topk")


@pytest.fixture(autouse=True)
def _one_thread(_seed_everything):
    torch.set_num_threads(1)


def run_visualize(tmp_path, *flags):
    argv = ["--model", "tiny_test", "--steps", "2", "--device", "cpu", "--output-dir", str(tmp_path / "out"), *flags]
    try:
        return visualize.main(argv)
    except SystemExit as exc:
        return exc.code


def run_optimize(tmp_path, *flags):
    argv = ["--model", "tiny_test", "--max-iter", "2", "--push-channel", "2", "--device", "cpu",
            "--output-prefix", str(tmp_path / "out" / "opt"), *flags]
    try:
        return optimize_image.main(argv, settings_dirs=[])
    except SystemExit as exc:
        return exc.code


RUNS = {"visualize.py": run_visualize, "optimize_image.py": run_optimize}


@pytest.mark.parametrize("prog", sorted(RUNS))
def test_a_latent_objective_runs_and_is_recorded(tmp_path, capsys, prog):
    assert RUNS[prog](tmp_path, "--dictionary", f"sae=conv1={SAE}", "--objective", "sae#5 - 0.1 * sae.act#2") == 0
    written = os.listdir(tmp_path / "out")
    config_name = next(n for n in written if n.endswith("config.yaml"))
    config = yaml.safe_load((tmp_path / "out" / config_name).read_text())
    assert config["dictionary"] == [f"sae=conv1={SAE}"] and config["objective"] == "sae#5 - 0.1 * sae.act#2"
    if prog == "visualize.py":
        info = (tmp_path / "out" / "viz_info.txt").read_text()
        assert info.startswith("objective: (sae#5 (conv1) - 0.1 * sae.act#2 (conv1))\n")


def test_config_yaml_names_the_dictionary(tmp_path):
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"dictionary": [f"sae=conv1={SAE}"], "objective": "sae#1"}))
    assert run_visualize(tmp_path, "--config", str(tmp_path / "run.yaml")) == 0
    assert "viz_step2_0.png" in os.listdir(tmp_path / "out")


def write_files(folder):
    """d4.safetensors (4 -> 6 latents), d.pt (a pickle of a dict of numpy arrays)."""
    save_file({"W_enc": torch.ones(4, 6), "b_enc": torch.zeros(6)}, str(folder / "d4.safetensors"))
    with open(folder / "d.pt", "wb") as handle:
        pickle.dump({"W_enc": np.zeros((4, 6))}, handle)


BAD = [
    (["--dictionary", "sae=conv1=missing.safetensors", "--objective", "sae#1"],
     "--dictionary 'missing.safetensors': no such file or folder"),
    (["--dictionary", "sae=fc8=d4.safetensors", "--objective", "sae#1"],
     "reads 4 channels, but layer 'fc8' has 5"),
    (["--dictionary", "sae=fc8=d4.safetensors", "--objective", "conv1:1"],  # given, though not used
     "reads 4 channels, but layer 'fc8' has 5"),
    (["--dictionary", "sae=conv1=d.pt", "--objective", "sae#1"],
     "'d.pt': refused: it is not a file of tensors"),
    (["--dictionary", "sae=conv1=d4.safetensors", "--objective", "other#1"],
     "unknown --dictionary 'other' in 'other#1'; dictionaries: sae"),
    (["--objective", "sae#1"], "unknown --dictionary 'sae' in 'sae#1'; dictionaries: none"),
    (["--dictionary", "sae=conv1=d4.safetensors", "--objective", "sae#6"],
     "latent 6 is out of range: --dictionary d4.safetensors (safetensors) has 6 latents (0..5)"),
    (["--dictionary", "sae:conv1:d4.safetensors", "--objective", "conv1:1"],
     "--dictionary 'sae:conv1:d4.safetensors': write NAME=LAYER=PATH[,topk=K]"),
    (["--dictionary", "sae=conv1=d4.safetensors", "--dictionary", "sae=conv1=d4.safetensors", "--objective",
      "sae#1"], "--dictionary name 'sae' is given twice"),
    (["--dictionary", "sae=conv9=d4.safetensors", "--objective", "conv1:1"],
     "'conv9' is not a layer of the model"),
    (["--dictionary", "sae=conv1=d4.safetensors,topk=9", "--objective", "sae#1"], "topk needs k in [1, 6], got 9"),
]


@pytest.mark.parametrize("prog", sorted(RUNS))
@pytest.mark.parametrize("flags, message", BAD, ids=[" ".join(f) for f, _ in BAD])
def test_bad_input_is_one_line_and_exit_2_and_writes_nothing(tmp_path, capsys, monkeypatch, prog, flags, message):
    monkeypatch.chdir(tmp_path)
    write_files(tmp_path)
    before = folder_state(tmp_path)
    assert RUNS[prog](tmp_path, *flags) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"{prog}: error: ") and message in err, err
    assert "Traceback" not in err and folder_state(tmp_path) == before
