"""Many units in one run: batched equals single, files named as single runs, summary, --resume, torchrun."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from dvtoolbox.cli.optimize_image import main

ROW1 = ["--decay", "0", "--blur-radius", "0.5", "--blur-every", "4", "--small-norm-percentile", "50",
        "--lr-policy", "progress", "--lr-params", "{'max_lr': 100.0, 'desired_prog': 2.0}"]
TINY_MAIN = os.path.join(os.path.dirname(__file__), "tiny_main.py")


def run(prefix, *flags):
    return main(["--model", "tiny_test", "--max-iter", "8", "--output-prefix", str(prefix), *ROW1, *flags],
                settings_dirs=[])


def load(prefix, channel):
    with open(f"{prefix}_fc8_{channel:04d}_0_info_big.pkl", "rb") as handle:
        return pickle.load(handle)[1]


def test_batched_units_equal_single_runs_and_are_named_like_them(tmp_path):
    assert run(tmp_path / "many" / "opt", "--push-channel", "0:5", "--batch-size", "3") == 0
    for channel in range(5):
        assert run(tmp_path / "single" / "opt", "--push-channel", str(channel)) == 0
        batched, single = load(tmp_path / "many" / "opt", channel), load(tmp_path / "single" / "opt", channel)
        np.testing.assert_allclose(batched.obj, single.obj, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(batched.norm, single.norm, rtol=1e-5)
        np.testing.assert_allclose(batched.best_xx, single.best_xx, rtol=1e-5, atol=1e-4)
        assert (batched.best_ii, batched.majority_ii, batched.meta_result) == \
               (single.best_ii, single.majority_ii, single.meta_result)
    summary = json.loads((tmp_path / "many" / "opt_fc8_summary.json").read_text())
    assert sorted(summary["units"], key=int) == ["0", "1", "2", "3", "4"]
    assert summary["units"]["2"]["best_obj"] == load(tmp_path / "many" / "opt", 2).best_obj
    assert summary["settings"]["params"]["max_iter"] == 8


def test_resume_skips_complete_units_and_redoes_incomplete_ones(tmp_path, capsys):
    prefix = tmp_path / "opt"
    assert run(prefix, "--push-channel", "all", "--batch-size", "2") == 0
    files = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    os.unlink(f"{prefix}_fc8_0003_0_config.yaml")  # unit 3 incomplete, as if killed while writing
    (tmp_path / ".opt_fc8_0003_0_info.txt.abc.tmp").write_text("partial")
    capsys.readouterr()
    assert run(prefix, "--push-channel", "all") == 2  # without --resume: refuses
    assert "cowardly refusing" in capsys.readouterr().err
    assert run(prefix, "--push-channel", "all", "--resume", "--batch-size", "2") == 0
    for path, mtime in files.items():
        if "_0003_" not in path.name and "summary" not in path.name:
            assert path.stat().st_mtime_ns == mtime, path  # finished units were not repeated
    assert os.path.exists(f"{prefix}_fc8_0003_0_config.yaml")
    assert not list(tmp_path.glob(".*.tmp"))


def test_resume_with_other_settings_is_refused_and_touches_nothing(tmp_path, capsys):
    prefix = tmp_path / "opt"
    assert run(prefix, "--push-channel", "0,1") == 0
    before = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    capsys.readouterr()
    assert run(prefix, "--push-channel", "0,1,2", "--resume", "--decay", "0.5") == 2
    err = capsys.readouterr().err
    assert "--resume:" in err and "other settings (differing: params)" in err and len(err.strip().splitlines()) == 1
    assert before == {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}


def test_sigkill_leaves_no_partial_file_and_resume_repeats_no_finished_unit(tmp_path):
    prefix = tmp_path / "opt"
    argv = [sys.executable, TINY_MAIN, "--model", "tiny_test", "--max-iter", "300", "--push-channel", "all",
            "--output-prefix", str(prefix), *ROW1]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(tmp_path.glob("*_config.yaml")) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p.name.split("_config")[0] for p in tmp_path.glob("*_config.yaml")}
    assert done and len(done) < 5
    for pkl in tmp_path.glob("*.pkl"):
        pickle.loads(pkl.read_bytes())  # every file there is complete
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir() if p.name.split("_info")[0].split("_best")[0]
              .split("_last")[0].split("_config")[0] in done}
    assert subprocess.run(argv + ["--resume"], capture_output=True).returncode == 0
    assert all(p.stat().st_mtime_ns == m for p, m in mtimes.items())
    assert len(list(tmp_path.glob("*_config.yaml"))) == 5 and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.skipif(sys.platform != "linux", reason="torchrun with gloo is tested on Linux")
def test_torchrun_two_ranks_write_every_unit_exactly_once(tmp_path):
    prefix = tmp_path / "opt"
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533", TINY_MAIN,
            "--model", "tiny_test", "--max-iter", "4", "--push-channel", "all", "--device", "cpu",
            "--output-prefix", str(prefix), "--batch-size", "2", *ROW1]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.glob("*_config.yaml")) == [f"opt_fc8_{c:04d}_0_config.yaml"
                                                                     for c in range(5)]
    summary = json.loads((tmp_path / "opt_fc8_summary.json").read_text())
    assert sorted(summary["units"], key=int) == ["0", "1", "2", "3", "4"]
    assert not list(tmp_path.glob("*rank*"))
    single = tmp_path / "single"
    assert run(single / "opt", "--push-channel", "3", "--max-iter", "4") == 0
    np.testing.assert_allclose(load(prefix, 3).obj, load(single / "opt", 3).obj, rtol=1e-5, atol=1e-6)
