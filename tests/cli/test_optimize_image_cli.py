"""optimize_image.py's command line, run in-process through main() on the tiny fixed-weight model."""

import os
import pickle

import numpy as np
import pytest
import torch
import yaml

from dvtoolbox.cli.optimize_image import get_parser, main
from dvtoolbox.optimize.params import FindParams
from dvtoolbox.optimize.results import FindResults

ORIGINAL_FLAGS = [
    "--caffe-root", "--deploy-proto", "--net-weights", "--mean", "--channel-swap-to-rgb", "--data-size",
    "--start-at", "--rand-seed", "--push-layer", "--push-channel", "--push-spatial", "--push-dir", "--decay",
    "--blur-radius", "--blur-every", "--small-val-percentile", "--small-norm-percentile", "--px-benefit-percentile",
    "--px-abs-benefit-percentile", "--lr-policy", "--lr-params", "--max-iter", "--output-prefix",
    "--output-template", "--brave", "--skipbig"]
SUFFIXES = ["best_X.jpg", "best_Xpm.jpg", "last_X.jpg", "last_Xpm.jpg", "info.txt", "info.pkl", "info_big.pkl",
            "config.yaml"]


def run(tmp_path, *flags, settings_dirs=()):
    argv = ["--model", "tiny_test", "--max-iter", "3", "--push-channel", "2",
            "--output-prefix", str(tmp_path / "out" / "opt"), *flags]
    return main(argv, settings_dirs=list(settings_dirs))


def outputs(tmp_path, stem="fc8_0002_0"):
    return [tmp_path / "out" / f"opt_{stem}_{s}" for s in SUFFIXES]


def test_all_26_original_flags_with_the_original_defaults():
    parser = get_parser()
    options = {s for a in parser._actions for s in a.option_strings}
    assert len(ORIGINAL_FLAGS) == 26 and set(ORIGINAL_FLAGS) <= options
    args = parser.parse_args([])
    assert (args.push_layer, args.push_channel, args.push_spatial, args.push_dir) == ("fc8", "130", "None", 1.0)
    assert (args.decay, args.blur_radius, args.blur_every, args.max_iter) == (0, 0, 0, 500)
    assert (args.start_at, args.rand_seed, args.lr_policy) == ("mean_plus_rand", 0, "constant")
    assert args.output_prefix == "optimize_results/opt"
    assert args.output_template == "%(p.push_layer)s_%(p.push_channel)04d_%(p.rand_seed)d"


def test_help_shows_every_default():
    text = " ".join(get_parser().format_help().split())
    for expected in ("(default: 500)", "(default: fc8)", "(default: 130)", "(default: 1)", "(default: None)", "(default: 0)",
                     "(default: mean_plus_rand)", "(default: constant)", "(default: {'lr': 1})",
                     "(default: optimize_results/opt)", "(default: False)", "(default: cuda when present, else cpu)"):
        assert expected in text, expected


def test_run_writes_the_original_files(tmp_path, capsys):
    assert run(tmp_path) == 0
    files = outputs(tmp_path)
    assert all(f.is_file() for f in files)
    assert not [p for p in os.listdir(tmp_path / "out") if p.startswith(".")]  # no temp files left
    text = (tmp_path / "out" / "opt_fc8_0002_0_info.txt").read_text()
    assert text.startswith("FindParams:\n                    blur_every: 0\n")
    assert "\n\n\nFindResults:\n                       best_ii: " in text
    assert "                      start_at: mean_plus_rand\n" in text
    params, results = pickle.loads(files[6].read_bytes())
    assert isinstance(params, FindParams) and isinstance(results, FindResults)
    assert params.push_unit == (2, 0, 0) and results.ii == [0, 1, 2]
    assert results.best_xx.shape == (3, 8, 8) and results.best_xx.dtype == np.float64
    assert results.best_obj == max(results.obj)
    _, trimmed = pickle.loads(files[5].read_bytes())
    assert trimmed.best_xx.startswith("Trimmed (3, 8, 8) array [")
    assert trimmed.obj == results.obj
    config = yaml.safe_load(files[7].read_text())
    assert config["max-iter"] == 3 and config["model"] == "tiny_test"
    assert config["resolved"]["data-size"] == [8, 8] and config["resolved"]["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert "Metaresult: majority" in capsys.readouterr().out


def test_refuses_to_overwrite_without_brave_and_changes_nothing(tmp_path, capsys):
    assert run(tmp_path) == 0
    before = {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in outputs(tmp_path)}
    capsys.readouterr()
    assert run(tmp_path, "--lr-params", "{'lr': 99.0}") == 2
    err = capsys.readouterr().err
    assert "cowardly refusing to overwrite" in err and "--brave" in err and len(err.strip().splitlines()) == 1
    assert before == {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in outputs(tmp_path)}
    assert run(tmp_path, "--lr-params", "{'lr': 99.0}", "--brave") == 0
    assert "'lr': 99.0" in (tmp_path / "out" / "opt_fc8_0002_0_info.txt").read_text()


def test_skipbig_skips_only_the_big_pickle(tmp_path):
    assert run(tmp_path, "--skipbig") == 0
    present = {f.name for f in (tmp_path / "out").iterdir()}
    assert "opt_fc8_0002_0_info_big.pkl" not in present and "opt_fc8_0002_0_info.pkl" in present


BAD_INPUTS = {
    "unknown layer": (["--push-layer", "fc9"], "unknown layer 'fc9'; valid layers: conv1, relu1, fc8, prob"),
    "channel out of range": (["--push-channel", "5"], "--push-channel 5 is out of range"),
    "spatial out of range": (["--push-layer", "conv1", "--push-spatial", "(8,0)"], "--push-spatial (8, 0) is out"),
    "spatial on fc layer": (["--push-spatial", "(1,1)"], "has no spatial dimensions"),
    "malformed literal": (["--lr-params", "{'lr': }"], "--lr-params: \"{'lr': }\" is not a Python literal"),
    "unsafe literal": (["--lr-params", "__import__('os').system('touch HACKED')"], "is not a Python literal"),
    "not a dict": (["--lr-params", "[1, 2]"], "--lr-params must be a dict"),
    "missing lr key": (["--lr-policy", "progress", "--lr-params", "{'lr': 1}"], "max_lr"),
    "percentile 100": (["--small-norm-percentile", "100"], "small_norm_percentile must be in [0, 100)"),
    "negative percentile": (["--px-abs-benefit-percentile", "-1"], "px_abs_benefit_percentile must be >= 0"),
    "negative decay": (["--decay", "-0.1"], "decay must be >= 0"),
    "negative blur": (["--blur-radius", "-1"], "blur_radius must be >= 0"),
    "negative blur every": (["--blur-every", "-2"], "blur_every must be >= 0"),
    "zero iterations": (["--max-iter", "0"], "max_iter must be >= 1"),
    "unknown start": (["--start-at", "sideways"], "start_at must be one of mean_plus_rand, randu, mean"),
    "unknown policy": (["--lr-policy", "fast"], "invalid choice: 'fast'"),
    "unreadable mean": (["--mean", "'no_such_mean.npy'"], "cannot read mean file 'no_such_mean.npy'"),
    "mean tuple of two": (["--mean", "(1, 2)"], "a per-channel mean needs 3 numbers"),
    "bad data size": (["--data-size", "(0,8)"], "--data-size must be a tuple of 2 integers >= 1"),
    "bad device": (["--device", "tpu"], "--device must be cpu, cuda or cuda:N"),
    "bad channel swap": (["--channel-swap-to-rgb", "(0,0,1)"], "must be a permutation"),
    "zero push dir": (["--push-dir", "0"], "push_dir must be non-zero"),
    "caffe half given": (["--deploy-proto", "x.prototxt"], "--deploy-proto and --net-weights go together"),
    "unknown model": (["--model", "resnet9000"], "--model 'resnet9000' is unknown; did you mean "),
    "bad template": (["--output-template", "%(p.nope)s"], "unknown field %(p.nope)s"),
    "not a unit": (["--push-channel", "one"], "--push-channel 'one': cannot read 'one'"),
    "empty unit list": (["--push-channel", "5:5"], "names no unit"),
    "unit list out of range": (["--push-channel", "1,2,9"], "unit 9 is out of range; the layer has 5 channels"),
    "batch size 0": (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    "infinite lr": (["--lr-params", "{'lr': 1e400}"], "must be finite and > 0, got lr=inf"),
    "negative max_lr": (["--lr-policy", "progress", "--lr-params", "{'max_lr': -1, 'desired_prog': 2.0}"],
                        "must be finite and > 0, got max_lr=-1"),
    "zero late_prog_mult": (["--lr-policy", "progress01", "--lr-params",
                             "{'max_lr': 1, 'early_prog': 0.1, 'late_prog_mult': 0}"], "late_prog_mult=0"),
    "bad image dtype": (["--image-dtype", "float16"], "invalid choice: 'float16'"),
    "factory import raises": (["--model", "tests.models.user_models_broken:factory"],
                              "--model tests.models.user_models_broken:factory: cannot import "
                              "tests.models.user_models_broken: RuntimeError: this module is broken on import"),
    "factory raises": (["--model", "tests.models.user_models:raises"],
                       "--model tests.models.user_models:raises: raises() raised ValueError: no weights for this size"),
    "factory needs arguments": (["--model", "tests.models.user_models:needs_args"],
                                "needs_args() raised TypeError: needs_args() missing 1 required positional argument"),
    "trust flag in yaml": (["--config", os.path.join(os.path.dirname(__file__), "..", "data", "trusts.yaml")],
                           "sets trust_model_file: it is an opt-in to run code, given only on the command line"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_one_line_exit_2_nothing_written(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    flags, expected = BAD_INPUTS[case]
    argparse_refuses = case in ("unknown policy", "bad image dtype")
    with pytest.raises(SystemExit) if argparse_refuses else _no_raise() as exc:
        status = run(tmp_path, *flags)
    status = exc.value.code if argparse_refuses else status
    err = capsys.readouterr().err
    assert status == 2
    assert expected in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "HACKED").exists()


def test_mean_of_wrong_shape_and_unwritable_folder(tmp_path, capsys):
    np.save(tmp_path / "mean2d.npy", np.zeros((8, 8), np.float32))
    assert run(tmp_path, "--mean", repr(str(tmp_path / "mean2d.npy"))) == 2
    assert "must have shape (3, H, W), got (8, 8)" in capsys.readouterr().err
    (tmp_path / "afile").write_text("x")
    argv = ["--model", "tiny_test", "--max-iter", "2", "--push-channel", "1",
            "--output-prefix", str(tmp_path / "afile" / "sub" / "opt")]
    assert main(argv, settings_dirs=[]) == 2
    err = capsys.readouterr().err
    assert "cannot write results to folder" in err and len(err.strip().splitlines()) == 1


class _no_raise:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_settings_local_is_read_without_running_it(tmp_path):
    (tmp_path / "settings_local.py").write_text(
        "import os\nbase = '%DVT_ROOT%/'\ncaffevis_data_mean = (1, 2, 3)\nmax_iter = 2\n"
        "caffevis_labels = base + 'labels.txt'\ndef f():\n    raise SystemExit(7)\nos.system('touch RAN')\n")
    assert run(tmp_path, "--max-iter", "2", settings_dirs=[tmp_path]) == 0  # command line wins over settings
    config = yaml.safe_load((tmp_path / "out" / "opt_fc8_0002_0_config.yaml").read_text())
    assert config["mean"] == "(1, 2, 3)" and config["settings-file"] == str(tmp_path / "settings_local.py")
    assert not (tmp_path / "RAN").exists()
    argv = ["--model", "tiny_test", "--push-channel", "1", "--output-prefix", str(tmp_path / "o2" / "opt")]
    assert main(argv, settings_dirs=[tmp_path]) == 0  # max_iter = 2 from the settings file
    _, results = pickle.loads((tmp_path / "o2" / "opt_fc8_0001_0_info_big.pkl").read_bytes())
    assert results.ii == [0, 1]


def test_yaml_config_sets_defaults_and_command_line_wins(tmp_path):
    cfg = tmp_path / "job.yaml"
    cfg.write_text("max-iter: 4\nlr_params: {lr: 5.0}\ndecay: 0.5\n")
    assert run(tmp_path, "--config", str(cfg), "--decay", "0.25") == 0
    params, results = pickle.loads((tmp_path / "out" / "opt_fc8_0002_0_info_big.pkl").read_bytes())
    assert params.lr_params == {"lr": 5.0} and params.decay == 0.25 and len(results.obj) == 3  # --max-iter 3 wins


def test_yaml_config_unknown_key(tmp_path, capsys):
    cfg = tmp_path / "job.yaml"
    cfg.write_text("max-iters: 4\n")
    assert run(tmp_path, "--config", str(cfg)) == 2
    assert "unknown key 'max-iters'" in capsys.readouterr().err


def test_start_at_npy_continues_exactly(tmp_path):
    assert run(tmp_path, "--lr-params", "{'lr': 30.0}", "--decay", "0.1") == 0
    _, first = pickle.loads((tmp_path / "out" / "opt_fc8_0002_0_info_big.pkl").read_bytes())
    np.save(tmp_path / "x0.npy", first.last_xx)
    argv = ["--model", "tiny_test", "--max-iter", "2", "--push-channel", "2", "--start-at", str(tmp_path / "x0.npy"),
            "--output-prefix", str(tmp_path / "cont" / "opt")]
    assert main(argv, settings_dirs=[]) == 0
    _, second = pickle.loads((tmp_path / "cont" / "opt_fc8_0002_0_info_big.pkl").read_bytes())
    np.testing.assert_array_equal(second.x0, first.last_xx)
    assert second.obj[0] == pytest.approx(first.obj[-1], rel=1e-5)


def test_push_dir_minus_one_minimises(tmp_path):
    assert run(tmp_path, "--push-dir", "-1", "--lr-params", "{'lr': 100.0}", "--max-iter", "6") == 0
    _, res = pickle.loads((tmp_path / "out" / "opt_fc8_0002_0_info_big.pkl").read_bytes())
    assert res.obj[-1] < res.obj[0] and res.best_obj == min(res.obj)


def test_per_channel_mean_is_broadcast(tmp_path):
    assert run(tmp_path, "--mean", "(10,20,30)", "--start-at", "randu") == 0
    _, res = pickle.loads((tmp_path / "out" / "opt_fc8_0002_0_info_big.pkl").read_bytes())
    expected = np.random.RandomState(0).uniform(0, 255, (3, 8, 8)) - np.array([10, 20, 30])[:, None, None]
    np.testing.assert_allclose(res.x0, expected, rtol=1e-6)


def test_list_layers(capsys):
    assert main(["--model", "tiny_test", "--list-layers"], settings_dirs=[]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["conv1  4x8x8  NCHW", "relu1  4x8x8  NCHW", "fc8    5      NC", "prob   5      NC"]


def test_verbose_logs_the_original_lines(tmp_path, caplog):
    caplog.set_level("INFO", logger="dvtoolbox.optimize.loop")
    assert run(tmp_path, "-v") == 0
    text = caplog.text
    assert "     push unit:        (2, 0, 0) with value" in text and "(class2)" in text
    assert "       Max idx: " in text and "1     progress: " in text


def test_small_blur_radius_warns_once(tmp_path, caplog):
    """The original printed its warning for 0 < blur radius < 0.3 at every step; here it is logged once."""
    from dvtoolbox.optimize import loop

    loop._warn_small_blur.cache_clear()
    with caplog.at_level("WARNING", logger="dvtoolbox.optimize.loop"):
        assert run(tmp_path, "--blur-radius", "0.2", "--blur-every", "1", "--max-iter", "6") == 0
    warnings = [r for r in caplog.records if "blur-radius of .3 or less" in r.getMessage()]
    assert len(warnings) == 1
