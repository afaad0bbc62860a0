"""A dictionary's latents as a push layer's units (optimize_image.py --push-layer NAME, dictionaries.tap): each
unit's obj is the latent's pre-activation at the pushed position; batched == single; a run killed with SIGKILL and
resumed equals an uninterrupted one; token layouts; a name that is also a layer."""

import os
import pickle
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from dvtoolbox.cli.optimize_image import main
from dvtoolbox.dictionaries import load_dictionary
from tests.conftest import make_tiny

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "dictionaries")
SAE = os.path.join(DATA, "saelens_topk")  # d_in 4 (tiny_test's conv1), 8 latents, b_dec subtracted
TINY_MAIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "cli", "tiny_main.py")
FLAGS = ["--model", "tiny_test", "--device", "cpu", "--dictionary", f"sae=conv1={SAE}", "--push-layer", "sae",
         "--push-spatial", "(3,5)"]


@pytest.fixture(autouse=True)
def _one_thread(_seed_everything):
    torch.set_num_threads(1)


def run(prefix, *flags):
    return main([*FLAGS, "--max-iter", "6", "--output-prefix", str(prefix), *flags], settings_dirs=[])


def load(prefix, latent):
    with open(f"{prefix}_sae_{latent:04d}_0_info_big.pkl", "rb") as handle:
        return pickle.load(handle)[1]


def test_obj_is_the_latent_pre_activation_at_the_pushed_position(tmp_path):
    assert run(tmp_path / "opt", "--push-channel", "6") == 0
    result = load(tmp_path / "opt", 6)
    model = make_tiny()
    conv1 = model.conv1(torch.from_numpy(np.asarray(result.best_xx, dtype=np.float32))[None] / 64.0)
    pre, _ = load_dictionary(SAE).encode(conv1[0, :, 3, 5])
    assert result.best_obj == pytest.approx(pre[6].item(), rel=1e-5)


def test_batched_latents_equal_single_runs(tmp_path):
    assert run(tmp_path / "many" / "opt", "--push-channel", "0:5", "--batch-size", "3") == 0
    for latent in range(5):
        assert run(tmp_path / "single" / "opt", "--push-channel", str(latent)) == 0
        batched, single = load(tmp_path / "many" / "opt", latent), load(tmp_path / "single" / "opt", latent)
        np.testing.assert_allclose(batched.obj, single.obj, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(batched.best_xx, single.best_xx, rtol=1e-5, atol=1e-4)
        assert (batched.best_ii, batched.meta_result) == (single.best_ii, single.meta_result)
    assert os.path.exists(tmp_path / "many" / "opt_sae_summary.json")
    assert os.path.exists(tmp_path / "many" / "index.html")


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    argv = [sys.executable, TINY_MAIN, *FLAGS, "--max-iter", "100", "--push-channel", "0:4"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    killed = tmp_path / "killed"
    proc = subprocess.Popen(argv + ["--output-prefix", str(killed / "opt")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 120
    while not list(killed.glob("*_config.yaml")) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(killed.glob("*_config.yaml")))
    assert 0 < done < 4
    resumed = subprocess.run(argv + ["--output-prefix", str(killed / "opt"), "--resume"], capture_output=True,
                             env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert main(argv[2:] + ["--output-prefix", str(tmp_path / "whole" / "opt")], settings_dirs=[]) == 0  # in-process
    for latent in range(4):
        a, b = load(killed / "opt", latent), load(tmp_path / "whole" / "opt", latent)
        assert a.obj == b.obj and np.array_equal(a.best_xx, b.best_xx)
    assert not list(killed.glob(".*.tmp"))


def test_token_layer_latents_are_units_on_the_patch_grid(tmp_path, capsys):
    from safetensors.torch import save_file
    rng = np.random.RandomState(0)
    save_file({"W_enc": torch.from_numpy(rng.randn(16, 6).astype(np.float32)), "b_enc": torch.zeros(6)},
              str(tmp_path / "d16.safetensors"))
    flags = ["--model", "tests.models.user_models:vit32", "--model-weights", "none", "--device", "cpu",
             "--dictionary", f"sae=encoder.layers.encoder_layer_0={tmp_path / 'd16.safetensors'}",
             "--push-layer", "sae"]
    assert main([*flags, "--list-layers"], settings_dirs=[]) == 0
    assert re.search(r"^sae\s+6x4x4\s+NCHW$", capsys.readouterr().out, re.M)  # the 4x4 patch grid
    assert main([*flags, "--push-channel", "0:6", "--push-spatial", "(1,2)", "--batch-size", "3", "--max-iter", "2",
                 "--output-prefix", str(tmp_path / "out" / "opt")], settings_dirs=[]) == 0
    assert len(list((tmp_path / "out").glob("opt_sae_*_config.yaml"))) == 6


def test_a_dictionary_named_like_a_layer_is_one_line(tmp_path, capsys):
    before = sorted(os.listdir(tmp_path))
    argv = ["--model", "tiny_test", "--device", "cpu", "--dictionary", f"conv1=conv1={SAE}", "--push-layer", "conv1",
            "--push-channel", "0", "--push-spatial", "(3,5)", "--output-prefix", str(tmp_path / "opt")]
    assert main(argv, settings_dirs=[]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--dictionary name 'conv1' is also a layer of the model" in err, err
    assert sorted(os.listdir(tmp_path)) == before
