"""--engine, --precision, --stats-every on both command lines: recorded in config.yaml, resolved per device, one-line
errors naming the flags; a compiled engine's short last batch filled up; --resume compares the precision."""

import pickle

import pytest
import yaml

from dvtoolbox.cli import visualize
from dvtoolbox.cli.optimize_image import main
from dvtoolbox.device import Execution
from dvtoolbox.optimize.job import padded_batch
from dvtoolbox.optimize.params import FindParams


def run(tmp_path, *flags):
    argv = ["--model", "tiny_test", "--max-iter", "6", "--push-channel", "2", "--device", "cpu",
            "--output-prefix", str(tmp_path / "out" / "opt"), *flags]
    return main(argv, settings_dirs=[])


def config(tmp_path, stem="fc8_0002_0"):
    return yaml.safe_load((tmp_path / "out" / f"opt_{stem}_config.yaml").read_text())


def results(tmp_path, stem="fc8_0002_0"):
    with open(tmp_path / "out" / f"opt_{stem}_info_big.pkl", "rb") as f:
        return pickle.load(f)[1]


def test_defaults_are_recorded_and_auto_resolved(tmp_path):
    assert run(tmp_path) == 0
    record = config(tmp_path)
    assert (record["engine"], record["precision"], record["stats-every"], record["tf32"]) == ("auto", "float32", 25,
                                                                                            False)
    assert (record["resolved"]["engine"], record["resolved"]["precision"]) == ("eager", "float32")


def test_a_mode_is_recorded_and_changes_the_numbers_by_its_precision(tmp_path):
    assert run(tmp_path / "a") == 0
    assert run(tmp_path / "b", "--engine", "folded", "--precision", "bf16", "--stats-every", "4") == 0
    record = config(tmp_path / "b")
    assert (record["engine"], record["precision"], record["stats-every"]) == ("folded", "bf16", 4)
    assert (record["resolved"]["engine"], record["resolved"]["precision"]) == ("folded", "bf16")
    reference, bf16 = results(tmp_path / "a"), results(tmp_path / "b")
    assert len(bf16.obj) == 6 and bf16.obj != reference.obj
    assert abs(bf16.obj[0] - reference.obj[0]) <= 0.01 * abs(reference.obj[0]) + 0.01


def test_stats_every_changes_nothing_but_the_copies(tmp_path):
    assert run(tmp_path / "a", "--stats-every", "1") == 0
    assert run(tmp_path / "b", "--stats-every", "4") == 0
    a, b = results(tmp_path / "a"), results(tmp_path / "b")
    assert (a.obj, a.norm, a.idxmax, a.best_ii) == (b.obj, b.norm, b.idxmax, b.best_ii)
    assert a.best_xx.tobytes() == b.best_xx.tobytes()


@pytest.mark.parametrize("flags, message", [
    (["--engine", "graphs"], "--engine graphs replays CUDA graphs: it needs --device cuda, got cpu; on cpu use "
                             "engine compiled, folded or eager"),
    (["--tf32", "--precision", "bf16"], "--tf32 cannot be combined with --precision bf16 (allow_tf32 is precision "
                                        "tf32)"),
    (["--stats-every", "0"], "--stats-every must be an integer >= 1, got 0"),
])
def test_bad_modes_are_one_line_errors(tmp_path, capsys, flags, message):
    assert run(tmp_path, *flags) == 2
    err = capsys.readouterr().err
    assert err.strip().endswith(message) and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_choices_are_checked_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        run(tmp_path, "--precision", "fp16")
    assert exit_.value.code == 2 and "invalid choice: 'fp16'" in capsys.readouterr().err


def test_a_compiled_engines_short_last_batch_is_filled_up():
    units = [FindParams(push_channel=c) for c in range(5)]
    compiled, eager = Execution("compiled"), Execution("eager")
    assert [q.push_channel for q in padded_batch(units[4:], 4, compiled, 5)] == [4, 4, 4, 4]
    assert [q.push_channel for q in padded_batch(units[:4], 4, compiled, 5)] == [0, 1, 2, 3]
    assert [q.push_channel for q in padded_batch(units[4:], 4, eager, 5)] == [4]
    assert [q.push_channel for q in padded_batch(units[:3], 4, compiled, 3)] == [0, 1, 2]  # one batch: no need


def test_resume_refuses_another_precision(tmp_path, capsys):
    flags = ["--push-channel", "0:3", "--batch-size", "2"]
    assert run(tmp_path, *flags, "--precision", "bf16") == 0
    assert run(tmp_path, *flags, "--resume", "--engine", "folded", "--precision", "bf16") == 0  # engine: mechanics
    assert run(tmp_path, *flags, "--resume") == 2
    assert "--resume" in capsys.readouterr().err


def test_visualize_flags(tmp_path, capsys):
    argv = ["--objective", "fc8:1", "--model", "tiny_test", "--steps", "3", "--device", "cpu", "--output-dir", str(tmp_path)]
    assert visualize.main(argv + ["--engine", "folded", "--precision", "bf16"]) == 0
    record = yaml.safe_load((tmp_path / "viz_config.yaml").read_text())
    assert (record["engine"], record["precision"]) == ("folded", "bf16")
    with pytest.raises(SystemExit):
        visualize.main(argv + ["--engine", "graphs", "--brave"])
    assert visualize.main(argv + ["--alpha", "--engine", "compiled", "--brave"]) == 2
    assert "--alpha cannot be combined with --engine compiled" in capsys.readouterr().err
