"""optimize_image.py end to end on the embedded model and on the real-Caffe reference net (Table-1 row 3 flags)."""

import os
import pickle

import pytest
import yaml

from dvtoolbox.cli.optimize_image import main

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")
ROW3 = ["--decay", "0.0001", "--blur-radius", "1.0", "--blur-every", "4", "--lr-policy", "constant",
        "--lr-params", "{'lr': 100.0}"]


def test_embedded_model_flamingo_runs_and_climbs(tmp_path):
    argv = ["--push-layer", "fc8", "--push-channel", "130", *ROW3, "--max-iter", "4", "--device", "cpu",
            "--output-prefix", str(tmp_path / "opt")]
    assert main(argv, settings_dirs=[]) == 0
    params, res = pickle.loads((tmp_path / "opt_fc8_0130_0_info_big.pkl").read_bytes())
    assert res.x0.shape == (3, 224, 224)
    assert res.x0[0, 0, 0] == pytest.approx(17.6405234597, rel=1e-6)  # np.random.seed(0); normal(0, 10)
    assert res.obj[-1] > res.obj[0] + 1
    config = yaml.safe_load((tmp_path / "opt_fc8_0130_0_config.yaml").read_text())
    assert config["resolved"]["mean"] == [127.0, 127.0, 127.0]
    assert config["resolved"]["channel-swap-to-rgb"] == [0, 1, 2]


@pytest.mark.skipif(not os.path.isdir(os.path.join(DATA, "caffe_reference")), reason="no Caffe reference files")
def test_caffe_reference_net_row3_end_to_end(tmp_path):
    ref = os.path.join(DATA, "caffe_reference")
    argv = ["--deploy-proto", os.path.join(ref, "tiny.prototxt"), "--net-weights", os.path.join(ref, "tiny.caffemodel"),
            "--mean", repr(os.path.join(ref, "mean.npy")), "--push-layer", "fc2", "--push-channel", "3", *ROW3,
            "--max-iter", "30", "--output-prefix", str(tmp_path / "opt")]
    assert main(argv, settings_dirs=[]) == 0
    params, res = pickle.loads((tmp_path / "opt_fc2_0003_0_info_big.pkl").read_bytes())
    assert res.best_xx.shape == (3, 32, 32) and len(res.obj) == 30
    assert res.best_obj > res.obj[0]
    config = yaml.safe_load((tmp_path / "opt_fc2_0003_0_config.yaml").read_text())
    assert config["resolved"]["channel-swap-to-rgb"] == [2, 1, 0] and config["resolved"]["data-size"] == [32, 32]
    for name in ("best_X.jpg", "best_Xpm.jpg", "info.txt", "info.pkl"):
        assert (tmp_path / f"opt_fc2_0003_0_{name}").is_file()
