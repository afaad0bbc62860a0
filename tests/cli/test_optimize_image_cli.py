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
from tests.folder_state import folder_state

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


BIG = "99999999999999999999999"
# name -> (flags, the line's expected text (naming the flag), files to put in the folder first: name -> text; a
# settings_local.py there is read, as from the current folder)
BAD_INPUTS = {
    "unknown layer": (["--push-layer", "fc9"], "unknown layer 'fc9'; valid layers: conv1, relu1, fc8, prob"),
    "channel out of range": (["--push-channel", "5"], "--push-channel 5 is out of range"),
    "channel huge": (["--push-channel", BIG], f"--push-channel {BIG} is out of range"),
    "spatial out of range": (["--push-layer", "conv1", "--push-spatial", "(8,0)"], "--push-spatial (8, 0) is out"),
    "spatial huge": (["--push-layer", "conv1", "--push-spatial", f"({BIG},0)"], "--push-spatial (9999"),
    "spatial on fc layer": (["--push-spatial", "(1,1)"], "has no spatial dimensions"),
    "malformed literal": (["--lr-params", "{'lr': }"], "--lr-params: \"{'lr': }\" is not a Python literal"),
    "unsafe literal": (["--lr-params", "__import__('os').system('touch HACKED')"], "is not a Python literal"),
    "not a dict": (["--lr-params", "[1, 2]"], "--lr-params must be a dict"),
    "missing lr key": (["--lr-policy", "progress", "--lr-params", "{'lr': 1}"],
                       "--lr-policy 'progress' needs --lr-params max_lr, desired_prog"),
    "percentile 100": (["--small-norm-percentile", "100"], "--small-norm-percentile must be in [0, 100)"),
    "negative percentile": (["--px-abs-benefit-percentile", "-1"], "--px-abs-benefit-percentile must be a finite "
                                                                   "number >= 0"),
    "nan percentile": (["--small-val-percentile", "nan"], "--small-val-percentile must be a finite number >= 0, "
                                                          "got nan"),
    "infinite percentile": (["--px-benefit-percentile", "inf"], "--px-benefit-percentile must be a finite number"),
    "negative decay": (["--decay", "-0.1"], "--decay must be a finite number in [0, 1], got -0.1"),
    "nan decay": (["--decay", "nan"], "--decay must be a finite number in [0, 1], got nan"),
    "infinite decay": (["--decay", "inf"], "--decay must be a finite number in [0, 1], got inf"),
    "negative blur": (["--blur-radius", "-1"], "--blur-radius must be a finite number in [0, 8192]"),
    "infinite blur": (["--blur-radius", "inf", "--blur-every", "1"], "--blur-radius must be a finite number in [0, "
                                                                     "8192], got inf"),
    "nan blur": (["--blur-radius", "nan"], "--blur-radius must be a finite number in [0, 8192], got nan"),
    "huge blur": (["--blur-radius", "1e9", "--blur-every", "1"], "--blur-radius must be a finite number in [0, 8192]"),
    "negative blur every": (["--blur-every", "-2"], "--blur-every must be an integer >= 0"),
    "zero iterations": (["--max-iter", "0"], "--max-iter must be an integer in [1, 100000000], got 0"),
    "huge iterations": (["--max-iter", BIG], f"--max-iter must be an integer in [1, 100000000], got {BIG}"),
    "unknown start": (["--start-at", "sideways"], "--start-at must be one of mean_plus_rand, randu, mean"),
    "unknown policy": (["--lr-policy", "fast"], "argument --lr-policy: invalid choice: 'fast'"),
    "unreadable mean": (["--mean", "'no_such_mean.npy'"], "--mean: cannot read mean file 'no_such_mean.npy'"),
    "mean tuple of two": (["--mean", "(1, 2)"], "--mean: a per-channel mean needs 3 finite numbers"),
    "infinite mean": (["--mean", "(1e400, 0, 0)"], "--mean must be None, a tuple of per-channel finite numbers"),
    "nan mean": (["--mean", "(nan, 0, 0)"], "--mean: '(nan, 0, 0)' is not a Python literal"),
    "bad data size": (["--data-size", "(0,8)"], "--data-size must be a tuple of 2 integers in [1, 8192]"),
    "huge data size": (["--data-size", "(100000000,100000000)"], "--data-size must be a tuple of 2 integers in [1, "
                                                                 "8192]"),
    "bad device": (["--device", "tpu"], "--device must be cpu, cuda or cuda:N"),
    "bad channel swap": (["--channel-swap-to-rgb", "(0,0,1)"], "--channel-swap-to-rgb must be a permutation"),
    "zero push dir": (["--push-dir", "0"], "--push-dir must be non-zero"),
    "infinite push dir": (["--push-dir", "inf"], "--push-dir must be a finite number, got inf"),
    "nan push dir": (["--push-dir", "nan"], "--push-dir must be a finite number, got nan"),
    "caffe half given": (["--deploy-proto", "x.prototxt"], "--deploy-proto and --net-weights go together"),
    "unknown model": (["--model", "resnet9000"], "--model 'resnet9000' is unknown; did you mean "),
    "bad template": (["--output-template", "%(p.nope)s"], "unknown field %(p.nope)s"),
    "not a unit": (["--push-channel", "one"], "--push-channel 'one': cannot read 'one'"),
    "empty unit list": (["--push-channel", "5:5"], "names no unit"),
    "unit list out of range": (["--push-channel", "1,2,9"], "unit 9 is out of range; the layer has 5 channels"),
    "batch size 0": (["--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
    "batch size negative": (["--batch-size", "-1"], "--batch-size must be an integer >= 1, got -1"),
    "stats every 0": (["--stats-every", "0"], "--stats-every must be an integer >= 1, got 0"),
    "negative seed": (["--rand-seed", "-1"], "--rand-seed must be an integer in [0, 4294967295], got -1"),
    "huge seed": (["--rand-seed", "4294967296"], "--rand-seed must be an integer in [0, 4294967295]"),
    "infinite lr": (["--lr-params", "{'lr': 1e400}"], "--lr-params must be a dict of names to finite numbers"),
    "infinite extra lr param": (["--lr-params", "{'lr': 1, 'x': -1e400}"], "--lr-params must be a dict of names to "
                                                                            "finite numbers"),
    "negative max_lr": (["--lr-policy", "progress", "--lr-params", "{'max_lr': -1, 'desired_prog': 2.0}"],
                        "--lr-params for --lr-policy 'progress' must be finite and > 0, got max_lr=-1"),
    "zero late_prog_mult": (["--lr-policy", "progress01", "--lr-params",
                             "{'max_lr': 1, 'early_prog': 0.1, 'late_prog_mult': 0}"], "late_prog_mult=0"),
    "bad image dtype": (["--image-dtype", "float16"], "argument --image-dtype: invalid choice: 'float16'"),
    "factory import raises": (["--model", "tests.models.user_models_broken:factory"],
                              "--model tests.models.user_models_broken:factory: cannot import "
                              "tests.models.user_models_broken: RuntimeError: this module is broken on import"),
    "factory raises": (["--model", "tests.models.user_models:raises"],
                       "--model tests.models.user_models:raises: raises() raised ValueError: no weights for this size"),
    "factory needs arguments": (["--model", "tests.models.user_models:needs_args"],
                                "needs_args() raised TypeError: needs_args() missing 1 required positional argument"),
    "trust flag in yaml": (["--config", os.path.join(os.path.dirname(__file__), "..", "data", "trusts.yaml")],
                           "sets trust_model_file: it is an opt-in to run code, given only on the command line"),
    "infinite input mean": (["--input-mean", "(1e400,0,0)"], "--input-mean must be 3 finite numbers (RGB, 0..1 "
                                                             "scale), got '(1e400,0,0)'"),
    "nan input std": (["--input-std", "(nan,1,1)"], "--input-std: '(nan,1,1)' is not a Python literal"),
    "input std of two": (["--input-std", "(1,1)"], "--input-std must be 3 finite numbers"),
    # non-finite numbers from a YAML config and from settings_local.py
    "yaml nan input mean": (["--config", "c.yaml"], "--input-mean must be 3 finite numbers (RGB, 0..1 scale), got "
                                                    "[nan, 0.5, 0.5]", {"c.yaml": "input-mean: [.nan, 0.5, 0.5]\n"}),
    "yaml infinite input std": (["--config", "c.yaml"], "--input-std must be 3 finite numbers",
                                {"c.yaml": "input-std: [0.2, .inf, 0.2]\n"}),
    "yaml nan decay": (["--config", "c.yaml"], "--decay must be a finite number in [0, 1], got nan",
                       {"c.yaml": "decay: .nan\n"}),
    "yaml infinite push dir": (["--config", "c.yaml"], "--push-dir must be a finite number, got -inf",
                               {"c.yaml": "push-dir: -.inf\n"}),
    "yaml infinite lr": (["--config", "c.yaml"], "--lr-params: \"{'lr': inf}\" is not a Python literal",
                         {"c.yaml": "lr-params: {lr: .inf}\n"}),
    "yaml nan mean": (["--config", "c.yaml"], "--mean: '(nan, 1, 2)' is not a Python literal",
                      {"c.yaml": "mean: [.nan, 1, 2]\n"}),
    "settings infinite input mean": ([], "--input-mean must be 3 finite numbers (RGB, 0..1 scale), got (inf, 0, 0)",
                                     {"settings_local.py": "input_mean = (1e400, 0, 0)\n"}),
    "settings infinite blur": ([], "--blur-radius must be a finite number in [0, 8192], got inf",
                               {"settings_local.py": "blur_radius = 1e400\n"}),
    "settings infinite data mean": ([], "--mean: '(inf, 0, 0)' is not a Python literal",
                                    {"settings_local.py": "caffevis_data_mean = (1e400, 0, 0)\n"}),
    # --layout: malformed, and not fitting the layer it names
    "layout grid without width": (["--layout", "fc8=NTC:grid=14x"], "--layout 'fc8=NTC:grid=14x': grid is HxW, "
                                                                   "two integers >= 1"),
    "layout grid without height": (["--layout", "fc8=NTC:grid=x14"], "--layout 'fc8=NTC:grid=x14': grid is HxW"),
    "layout grid 0x0": (["--layout", "fc8=NTC:grid=0x0"], "--layout 'fc8=NTC:grid=0x0': grid is HxW, two "
                                                         "integers >= 1"),
    "layout grid of three": (["--layout", "fc8=NTC:grid=2x2x2"], "--layout 'fc8=NTC:grid=2x2x2': grid is HxW"),
    "layout grid of letters": (["--layout", "fc8=NTC:grid=axb"], "--layout 'fc8=NTC:grid=axb': grid is HxW"),
    "layout grid huge": (["--layout", f"fc8=NTC:grid={BIG}x2"], "grid is HxW, two integers >= 1 (at most 1000000)"),
    "layout empty prefix": (["--layout", "fc8=NTC:prefix="], "--layout 'fc8=NTC:prefix=': prefix is P, an integer "
                                                            ">= 0"),
    "layout negative prefix": (["--layout", "fc8=NTC:prefix=-1"], "--layout 'fc8=NTC:prefix=-1': prefix is P"),
    "layout prefix huge": (["--layout", f"fc8=NTC:prefix={BIG}"], "prefix is P, an integer >= 0 (at most 1000000)"),
    "layout prefix twice": (["--layout", "fc8=NTC:prefix=1:prefix=2"], "--layout 'fc8=NTC:prefix=1:prefix=2': only "
                                                                      "NTC takes options, each at most once"),
    "layout option on NC": (["--layout", "fc8=NC:prefix=1"], "only NTC takes options"),
    "layout unknown option": (["--layout", "fc8=NTC:rows=2"], "only NTC takes options"),
    "layout unknown kind": (["--layout", "fc8=NHCW"], "--layout 'fc8=NHCW': write NAME=KIND"),
    "layout without kind": (["--layout", "fc8="], "--layout 'fc8=': write NAME=KIND"),
    "layout without name": (["--layout", "=NC"], "--layout '=NC': write NAME=KIND"),
    "layout layer twice": (["--layout", "fc8=NC", "--layout", "fc8=NC"], "--layout gives layer 'fc8' twice"),
    "layout unknown layer": (["--layout", "fc9=NC"], "--layout: 'fc9' is not a layer of the model"),
    "layout NC on a grid": (["--layout", "conv1=NC"], "--layout: layer 'conv1' is declared NC but its output has "
                                                      "shape (1, 4, 8, 8)"),
    "layout tokens on a grid": (["--layout", "conv1=NTC:grid=2x2"], "--layout: layer 'conv1' is declared NTC "
                                                                    "(prefix 0, grid 2x2) but its output has shape"),
    "layout grid on the pushed fc layer": (["--layout", "fc8=NCHW"], "--layout: layer 'fc8' is declared NCHW but its "
                                                                     "output has shape (1, 5)"),
    "layout tokens on the pushed fc layer": (["--layout", "fc8=NTC"], "--layout: layer 'fc8' is declared NTC"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_one_line_exit_2_nothing_written(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    flags, expected, files = (BAD_INPUTS[case] + ({},))[:3]
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    before = folder_state(tmp_path)
    try:
        status = run(tmp_path, *flags, settings_dirs=[tmp_path])
    except SystemExit as exc:  # argparse's own refusals (OneLineErrorParser: one line, status 2)
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("optimize_image.py: error: ") and expected in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert folder_state(tmp_path) == before and not (tmp_path / "HACKED").exists()


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
