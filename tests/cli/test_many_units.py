"""Many units in one run: batched equals single, files named as single runs, summary, --resume, torchrun."""

import json
import os
import pickle
import shutil
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


def _resume_argv(prefix):
    return ["--model", "tiny_test", "--max-iter", "2", "--push-channel", "all", "--output-prefix", str(prefix)]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 5-unit run (fc8 of tiny_test, 2 iterations): its folder and its summary."""
    folder = tmp_path_factory.mktemp("finished")
    assert main(_resume_argv(folder / "opt"), settings_dirs=[]) == 0
    return folder, json.loads((folder / "opt_fc8_summary.json").read_text())


def _entry(summary, unit="0", **changes):
    return dict(summary["units"][unit], **changes)


# name -> (what the summary file holds: bytes, or a function of the good summary giving JSON data (text: the file's
# text itself); the line's text)
DAMAGED_SUMMARIES = {
    "empty file": (b"", "cannot be read: Expecting value"),
    "binary garbage": (bytes(range(256)) * 4, "cannot be read: 'utf-8' codec can't decode"),
    "truncated JSON": (lambda s: json.dumps(s)[:60], "cannot be read: Unterminated string"),
    "deeply nested JSON": (b"[" * 100000 + b"]" * 100000, "cannot be read: "),
    "a JSON list": (lambda s: [s], "it holds a JSON array, not an object"),
    "a JSON null": (lambda s: None, "it holds a JSON null, not an object"),
    "a JSON number": (lambda s: 3, "it holds a JSON number, not an object"),
    "no settings": (lambda s: {"units": s["units"]}, "it has no 'settings'"),
    "no units": (lambda s: {"settings": s["settings"]}, "it has no 'units'"),
    "settings a list": (lambda s: {"settings": [], "units": s["units"]}, "its settings are a JSON array"),
    "settings a string": (lambda s: {"settings": "abc", "units": s["units"]}, "its settings are a JSON string"),
    "units a list": (lambda s: {"settings": s["settings"], "units": ["ab"]}, "its units are a JSON array"),
    "units a string": (lambda s: {"settings": s["settings"], "units": "xy"}, "its units are a JSON string"),
    "unit key not a number": (lambda s: {**s, "units": {**s["units"], "x": _entry(s)}}, "unit 'x': not a unit number"),
    "unit key negative": (lambda s: {**s, "units": {"-1": _entry(s)}}, "unit '-1': not a unit number"),
    "unit key with zeros": (lambda s: {**s, "units": {"03": _entry(s)}}, "unit '03': not a unit number"),
    "unit key fraction": (lambda s: {**s, "units": {"1.5": _entry(s)}}, "unit '1.5': not a unit number"),
    "unit out of range": (lambda s: {**s, "units": {**s["units"], "5": _entry(s)}},
                          "unit '5': out of range, the layer has 5 units (0..4)"),
    "unit entry a number": (lambda s: {**s, "units": {**s["units"], "0": 5}}, "unit '0': its entry is a JSON number"),
    "unit entry empty": (lambda s: {**s, "units": {**s["units"], "1": {}}}, "unit '1': its entry has no 'best_obj'"),
    "unit entry without prefix": (lambda s: {**s, "units": {"2": {k: v for k, v in _entry(s, "2").items()
                                                                  if k != "prefix"}}}, "its entry has no 'prefix'"),
    "unit best_obj a string": (lambda s: {**s, "units": {"0": _entry(s, best_obj="high")}},
                               "unit '0': its best_obj is 'high'"),
    "unit best_ii a float": (lambda s: {**s, "units": {"0": _entry(s, best_ii=1.5)}}, "its best_ii is 1.5"),
    "unit best_ii a boolean": (lambda s: {**s, "units": {"0": _entry(s, best_ii=True)}}, "its best_ii is True"),
    "unit prefix a list": (lambda s: {**s, "units": {"0": _entry(s, prefix=["a"])}}, "its prefix is ['a']"),
}


@pytest.mark.parametrize("incomplete", [False, True], ids=["all finished", "unit 3 unfinished"])
@pytest.mark.parametrize("case", sorted(DAMAGED_SUMMARIES))
def test_resume_on_a_damaged_summary_is_one_line_and_rewrites_nothing(finished_run, tmp_path, capsys, case,
                                                                       incomplete):
    """A damaged summary stops --resume before any work: no finished unit is redone (nor an unfinished one), no
    file written or changed (bytes and mtimes), one line naming --resume and the problem."""
    source, good = finished_run
    folder = tmp_path / "run"
    shutil.copytree(source, folder)
    content, expected = DAMAGED_SUMMARIES[case]
    (folder / "opt_fc8_summary.json").write_bytes(_summary_bytes(content, good))
    if incomplete:
        os.unlink(folder / "opt_fc8_0003_0_config.yaml")
    before = _state(folder)
    assert main(_resume_argv(folder / "opt") + ["--resume"], settings_dirs=[]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"optimize_image.py: error: --resume: {folder / 'opt_fc8_summary.json'} is not a run "
                          "summary of optimize_image.py (") and expected in err, err
    assert "--output-prefix" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert _state(folder) == before


@pytest.mark.parametrize("case", ["binary garbage", "a JSON list", "unit out of range", "unit entry empty"])
def test_resume_on_a_damaged_rank_part_is_one_line_and_rewrites_nothing(finished_run, tmp_path, capsys, case):
    """A per-rank summary part left in the folder (by a torchrun run) is read at the end of a run: a damaged one
    is refused before any work."""
    source, good = finished_run
    folder = tmp_path / "run"
    shutil.copytree(source, folder)
    content, expected = DAMAGED_SUMMARIES[case]
    part = folder / "opt_fc8_summary.rank1.json"
    part.write_bytes(_summary_bytes(content, good))
    os.unlink(folder / "opt_fc8_0003_0_config.yaml")
    before = _state(folder)
    assert main(_resume_argv(folder / "opt") + ["--resume"], settings_dirs=[]) == 2
    err = capsys.readouterr().err
    assert f"--resume: {part} is not a run summary" in err and expected in err and err.count("\n") == 1, err
    assert _state(folder) == before


def test_resume_on_a_summary_that_is_a_folder(finished_run, tmp_path, capsys):
    source, _ = finished_run
    folder = tmp_path / "run"
    shutil.copytree(source, folder)
    os.unlink(folder / "opt_fc8_summary.json")
    (folder / "opt_fc8_summary.json").mkdir()
    os.unlink(folder / "opt_fc8_0003_0_config.yaml")
    before = _state(folder)
    assert main(_resume_argv(folder / "opt") + ["--resume"], settings_dirs=[]) == 2
    err = capsys.readouterr().err
    assert "is not a run summary of optimize_image.py (cannot be read: Is a directory)" in err and err.count("\n") == 1
    assert _state(folder) == before


def test_resume_on_a_valid_summary_redoes_only_the_unfinished_unit(finished_run, tmp_path):
    """The same folder with its summary intact: the control of the tests above (resume works there)."""
    source, _ = finished_run
    folder = tmp_path / "run"
    shutil.copytree(source, folder)
    os.unlink(folder / "opt_fc8_0003_0_config.yaml")
    before = _state(folder)
    assert main(_resume_argv(folder / "opt") + ["--resume"], settings_dirs=[]) == 0
    after = _state(folder)
    changed = sorted(name for name in before if before[name] != after.get(name))
    assert changed and all("_0003_" in name or name in ("opt_fc8_summary.json", "index.html") for name in changed)
    assert "opt_fc8_0003_0_config.yaml" in after


def _summary_bytes(content, good) -> bytes:
    if isinstance(content, bytes):
        return content
    data = content(good)
    return (data if isinstance(data, str) else json.dumps(data)).encode()


def _state(folder):
    """name -> (bytes, mtime) of every file in ``folder`` (None for a folder)."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) if p.is_file() else None for p in folder.iterdir()}


def test_another_runs_summary_is_not_replaced_without_brave(finished_run, tmp_path, capsys):
    """Units not yet in a folder, but its summary is another run's: refused without --brave (and --resume is the
    way to add units to a run), as every other file."""
    source, _ = finished_run
    folder = tmp_path / "run"
    shutil.copytree(source, folder)
    for path in folder.glob("opt_fc8_0004_0_*"):
        path.unlink()
    before = _state(folder)
    argv = ["--model", "tiny_test", "--max-iter", "2", "--push-channel", "4:5", "--output-prefix", str(folder / "opt")]
    assert main(argv, settings_dirs=[]) == 2
    err = capsys.readouterr().err
    assert f"cowardly refusing to overwrite {folder / 'opt_fc8_summary.json'}" in err and err.count("\n") == 1, err
    assert _state(folder) == before
