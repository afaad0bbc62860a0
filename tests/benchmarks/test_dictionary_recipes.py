"""dictionary_recipes.py on the tiny one-block ViT: both recipes render every latent, and the printed values are
the units' info.txt values (each the latent's mean pre-activation on its written image, checked in
tests/cli/test_visualize_units.py)."""

import os
import re
import sys

import pytest
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import dictionary_recipes  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread(_seed_everything):
    torch.set_num_threads(1)


def test_two_recipes_on_a_token_layer(tmp_path, capsys):
    assert dictionary_recipes.main(["--out", str(tmp_path), "--model", "tests.models.user_models:vit32",
                                    "--layer", "encoder.layers.encoder_layer_0", "--channels", "16",
                                    "--latents", "8", "--units", "2", "--steps", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    rows = {m.group(1): m.group(2).split() for m in re.finditer(r"^\| (lucid|maco) \| ([^|]+) \|", out, re.M)}
    assert set(rows) == {"lucid", "maco"}
    for recipe, values in rows.items():
        info = (tmp_path / recipe / "viz_sae_0001_info.txt").read_text()
        assert float(values[1]) == pytest.approx(float(re.search(r"value at step 2: (\S+)", info).group(1)), rel=1e-2)
    assert re.search(r"^maco drives the latent higher than lucid on [0-2] of 2$", out, re.M)
