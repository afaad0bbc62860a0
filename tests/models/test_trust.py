"""The trust boundary, tried as an attacker would: module files whose unpickling would run code (the proof is a
marker file the payload creates, which must stay absent), settings files and YAML configs that name code, and user
factories that fail. Library and both command lines."""

import functools
import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from dvtoolbox.cli.optimize_image import main as optimize_main
from dvtoolbox.cli.visualize import main as visualize_main
from dvtoolbox.errors import UsageError
from dvtoolbox.models.load import load_model, model_kind
from dvtoolbox.models.module_files import allowed_global, named_globals
from dvtoolbox.optimize.job import OptimizeJob, run_job
from dvtoolbox.optimize.params import FindParams
from dvtoolbox.optvis.job import VisualizeJob, run_visualize
from tests.models.user_models import Payload, PayloadNet, TinyNet, tiny_sequential

ROOT = Path(__file__).resolve().parents[2]
OPEN = f"{open.__module__}.{open.__name__}"  # builtins.open is io.open


@pytest.fixture
def marker(tmp_path):
    """Where a payload would write: it must not exist after any refused load."""
    return tmp_path / "PAYLOAD_RAN"


def hostile_files(folder: Path, marker: Path) -> dict:
    """name -> (path of a module file, the global the refusal must name)."""
    folder.mkdir(exist_ok=True)
    sequential = tiny_sequential()
    sequential.hidden = Payload(str(marker))       # torch.nn's layers with an object whose unpickling opens a file
    partial = tiny_sequential()
    partial.act = functools.partial(os.system, f"touch {marker}")  # partial is allowed; what it wraps is not
    cases = {
        "user class with a payload": (PayloadNet(str(marker)), "tests.models.user_models.PayloadNet"),
        "torch.nn layers hiding open": (sequential, OPEN),
        "partial of os.system": (partial, f"{os.system.__module__}.system"),
        "bare payload": (Payload(str(marker)), OPEN),
        "user class first, then a payload": ([TinyNet(), Payload(str(marker))], "tests.models.user_models.TinyNet"),
    }
    files = {}
    for i, (name, (obj, named)) in enumerate(cases.items()):
        path = folder / f"hostile{i}.pt"
        torch.save(obj, path)
        files[name] = (str(path), named)
    return files


# ---------------------------------------------------------------------------------------------------- library


def test_hostile_module_files_are_refused_in_one_line_and_run_nothing(tmp_path, marker):
    for name, (path, named) in hostile_files(tmp_path / "files", marker).items():
        with pytest.raises(UsageError) as info:
            load_model(path)
        message = str(info.value)
        assert f"it names {named}, which is not on the allow-list" in message, (name, message)
        assert "trust_model_file" in message and "\n" not in message, name
        assert info.value.fields == ("model", "trust_model_file")
        assert not marker.exists(), name


@pytest.mark.parametrize("how", [dict(pickle_protocol=4), dict(_use_new_zipfile_serialization=False)])
@pytest.mark.parametrize("payload", [True, False])
def test_files_the_allow_list_cannot_check_are_refused(tmp_path, marker, how, payload):
    """Protocol 4 (FRAME, STACK_GLOBAL) and torch's pre-1.6 format are not read by the opcode scan: refused before
    unpickling, a payload or not."""
    path = tmp_path / "other_format.pt"
    torch.save(Payload(str(marker)) if payload else tiny_sequential(), path, **how)
    with pytest.raises(UsageError, match="cannot check it against the allow-list .*give trust_model_file") as info:
        load_model(str(path))
    assert "\n" not in str(info.value) and not marker.exists()


def test_a_trusted_file_is_unpickled_whole_and_runs_its_code(tmp_path, marker):
    """The opt-in does what it says: the user class is restored, and its code runs (here: writes the marker)."""
    path = tmp_path / "payload.pt"
    torch.save(PayloadNet(str(marker)), path)
    model = load_model(str(path), trust_model_file=True)
    assert type(model.net) is PayloadNet and marker.read_text() == "the payload ran"
    torch.testing.assert_close(model.net.body[0].weight, tiny_sequential()[0].weight, rtol=0, atol=0)


def test_a_user_class_loads_only_with_the_opt_in(tmp_path):
    path = tmp_path / "user.pt"
    torch.save(TinyNet(), path)
    with pytest.raises(UsageError, match=r"it names tests\.models\.user_models\.TinyNet"):
        load_model(str(path))
    assert type(load_model(str(path), trust_model_file=True).net) is TinyNet


def _same_module(original: nn.Module, path: Path, x: torch.Tensor) -> None:
    torch.save(original, path)
    loaded = load_model(str(path))                 # no opt-in: through the allow-list
    assert type(loaded.net) is type(original)
    with torch.no_grad():
        assert torch.equal(loaded.net(x), original(x))
    for (k, a), (k2, b) in zip(original.state_dict().items(), loaded.net.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k


def test_torchvision_module_files_load_without_the_opt_in_and_compute_the_same(tmp_path):
    torch.manual_seed(1)
    x = torch.rand(2, 3, 32, 32)
    _same_module(torchvision.models.resnet18().eval(), tmp_path / "resnet18.pt", x)
    vit = torchvision.models.VisionTransformer(image_size=32, patch_size=16, num_layers=1, num_heads=2,
                                               hidden_dim=8, mlp_dim=16).eval()  # norm_layer: functools.partial
    assert ("functools", "partial") in named_globals(_saved(vit, tmp_path / "probe.pt"))
    _same_module(vit, tmp_path / "vit.pt", x)


def test_timm_module_files_load_without_the_opt_in_and_compute_the_same(tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(2)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=1).eval()
    _same_module(vit, tmp_path / "timm_vit.pt", torch.rand(1, 3, 32, 32))
    effnet = timm.create_model("efficientnet_b0", pretrained=False, num_classes=4).eval()
    _same_module(effnet, tmp_path / "timm_effnet.pt", torch.rand(1, 3, 32, 32))


def _saved(module, path):
    torch.save(module, path)
    return str(path)


@pytest.mark.parametrize("module, name, allowed", [
    ("torch.nn.modules.conv", "Conv2d", nn.Conv2d),
    ("torchvision.models.resnet", "ResNet", torchvision.models.ResNet),
    ("functools", "partial", functools.partial),
    ("torch.nn.functional", "os", None),                          # a module imported there
    ("torch.nn.functional", "relu", None),                        # a function
    ("torch.nn.modules.module", "OrderedDict", None),             # a class from elsewhere, re-exported
    ("torchvision.datasets.utils", "download_url", None),         # a function of an allowed package
    ("torch.nn.parallel.distributed", "DistributedDataParallel", None),
    ("torch", "Tensor", None),                                    # outside torch.nn (torch's own list has tensors)
    ("builtins", "eval", None),
    ("os", "system", None),
    ("tests.models.user_models", "TinyNet", None),
    ("torchvisionx", "ResNet", None),                             # a prefix is not a package
])
def test_allow_list(module, name, allowed):
    assert allowed_global(module, name) is allowed


def test_the_allow_list_imports_nothing_outside_its_packages():
    assert allowed_global("tests.models.user_models_broken", "factory") is None
    assert "tests.models.user_models_broken" not in sys.modules


def test_timm_enums_are_allowed():
    pytest.importorskip("timm")
    from timm.layers.format import Format

    assert allowed_global("timm.layers.format", "Format") is Format


def test_model_kind():
    assert [model_kind(s) for s in ("resnet50", "efficientnet_lite0", "timm:vit_tiny_patch16_224",
                                    "caffe:deploy.prototxt", "torchvision:resnet18")] == ["name"] * 5
    assert model_kind("net.pt") == model_kind("dir/net.pth") == "file"
    assert model_kind("pkg.mod:factory") == "factory"


@pytest.mark.parametrize("spec, message", [
    ("tests.models.user_models_broken:factory",
     "model tests.models.user_models_broken:factory: cannot import tests.models.user_models_broken: RuntimeError: "
     "this module is broken on import"),
    ("tests.models.user_models:raises",
     "model tests.models.user_models:raises: raises() raised ValueError: no weights for this size"),
    ("tests.models.user_models:needs_args",
     "model tests.models.user_models:needs_args: needs_args() raised TypeError: needs_args() missing 1 required "
     "positional argument: 'width'"),
])
def test_failing_factories_are_one_line_naming_the_factory_and_the_error(spec, message, caplog):
    with caplog.at_level(logging.INFO, logger="dvtoolbox.models.load"), pytest.raises(UsageError) as info:
        load_model(spec)
    assert str(info.value) == message and info.value.fields == ("model",)
    (record,) = caplog.records
    assert record.exc_info is not None and "Traceback" in caplog.text  # the traceback, for -v


def test_the_jobs_pass_the_opt_in_down(tmp_path, marker):
    path = tmp_path / "payload.pt"
    torch.save(PayloadNet(str(marker)), path)
    params = FindParams(push_layer="body.4", push_channel=1, max_iter=2, lr_params={"lr": 10.0})
    job = dict(params=params, model=str(path), data_size=(16, 16), output_prefix=str(tmp_path / "o" / "o"))
    with pytest.raises(UsageError, match="give trust_model_file"):
        run_job(OptimizeJob(**job))
    assert not marker.exists() and not (tmp_path / "o").exists()
    (result,), _ = run_job(OptimizeJob(**job, trust_model_file=True))
    assert marker.exists() and len(result.obj) == 2
    marker.unlink()
    viz = dict(model=str(path), objective="body.4:1", thresholds=[2], size=16, resize_to_contract=False,
               transforms="none", device="cpu", output_dir=str(tmp_path / "v"))
    with pytest.raises(UsageError, match="give trust_model_file"):
        run_visualize(VisualizeJob(**viz))
    assert not marker.exists() and not (tmp_path / "v").exists()
    assert run_visualize(VisualizeJob(**viz, trust_model_file=True)) and marker.exists()


# ---------------------------------------------------------------------------------------------------- command lines


def _optimize(tmp_path, *flags, settings_dirs=()):
    argv = ["--model", "tiny_test", "--push-channel", "1", "--max-iter", "2",
            "--output-prefix", str(tmp_path / "out" / "o"), *flags]
    return optimize_main(argv, settings_dirs=list(settings_dirs))


def _visualize(tmp_path, *flags):
    argv = ["--model", "tiny_test", "--objective", "fc8:1", "--steps", "2", "--device", "cpu",
            "--output-dir", str(tmp_path / "out"), *flags]
    try:
        return visualize_main(argv)
    except SystemExit as exc:
        return exc.code


def _one_line(capsys, prog, *expected):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"{prog}: error: ") and "Traceback" not in err, err
    for text in expected:
        assert text in err, err


@pytest.mark.parametrize("command", ["optimize", "visualize"])
def test_command_lines_refuse_hostile_files_and_take_the_opt_in(tmp_path, marker, capsys, command):
    run, prog = (_optimize, "optimize_image.py") if command == "optimize" else (_visualize, "visualize.py")
    layer = ["--push-layer", "body.4"] if command == "optimize" else ["--objective", "body.4:1", "--size", "16",
                                                                      "--no-resize", "--transforms", "none"]
    for name, (path, named) in hostile_files(tmp_path / "files", marker).items():
        assert run(tmp_path, "--model", path, *layer) == 2, name
        _one_line(capsys, prog, f"--model {path!r}: refused: it names {named}", "give --trust-model-file")
        assert not marker.exists() and not (tmp_path / "out").exists(), name
    user = _saved(TinyNet(), tmp_path / "user.pt")
    assert run(tmp_path, "--model", user, *layer) == 2
    _one_line(capsys, prog, "it names tests.models.user_models.TinyNet", "--trust-model-file")
    assert run(tmp_path, "--model", user, "--trust-model-file", *layer,
               *(["--data-size", "(16,16)"] if command == "optimize" else [])) == 0
    assert (tmp_path / "out").is_dir()


def test_help_names_the_opt_in(capsys):
    for main in (optimize_main, visualize_main):
        with pytest.raises(SystemExit):
            main(["--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--trust-model-file Unpickle a --model file whole" in text and "files you trust" in text


def _settings_cases(tmp_path, marker):
    payload = _saved(PayloadNet(str(marker)), tmp_path / "payload.pt")
    return {
        "a module file": (f"model = {payload!r}\n", f"model: {payload}\n", "a file"),
        "a factory": ("model = 'tests.models.user_models:tiny_sequential'\n",
                      "model: tests.models.user_models:tiny_sequential\n", "a factory"),
        "the opt-in": ("trust_model_file = True\n", "trust-model-file: true\n", "sets trust_model_file"),
        "opt-in and a file": (f"trust_model_file = True\nmodel = {payload!r}\n",
                              f"trust_model_file: true\nmodel: {payload}\n", "trust_model_file"),
    }


CASES = ["a module file", "a factory", "the opt-in", "opt-in and a file"]


@pytest.mark.parametrize("case", CASES)
def test_settings_local_may_not_name_code(tmp_path, marker, capsys, case):
    settings, _, expected = _settings_cases(tmp_path, marker)[case]
    (tmp_path / "settings_local.py").write_text(settings)
    # the command line's own --model does not make the settings file acceptable: the file is refused as written
    assert _optimize(tmp_path, "--trust-model-file", settings_dirs=[tmp_path]) == 2
    _one_line(capsys, "optimize_image.py", f"settings file {str(tmp_path / 'settings_local.py')!r}", expected,
              "command line")
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["optimize", "visualize"])
@pytest.mark.parametrize("case", CASES)
def test_yaml_config_may_not_name_code(tmp_path, marker, capsys, case, command):
    _, config, expected = _settings_cases(tmp_path, marker)[case]
    (tmp_path / "c.yaml").write_text(config)
    run, prog = (_optimize, "optimize_image.py") if command == "optimize" else (_visualize, "visualize.py")
    assert run(tmp_path, "--config", str(tmp_path / "c.yaml"), "--trust-model-file") == 2
    _one_line(capsys, prog, f"--config {str(tmp_path / 'c.yaml')!r}", expected, "command line")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_settings_and_yaml_may_name_models(tmp_path):
    (tmp_path / "settings_local.py").write_text("model = 'tiny_test'\n")
    (tmp_path / "c.yaml").write_text("model: tiny_test\n")
    assert _optimize(tmp_path, "--config", str(tmp_path / "c.yaml"), settings_dirs=[tmp_path]) == 0


def test_verbose_shows_the_factorys_traceback(tmp_path):
    """In a process of its own, as a user runs it: one line without -v; with -v the traceback too."""
    argv = [sys.executable, str(ROOT / "optimize_image.py"), "--model", "tests.models.user_models:raises",
            "--output-prefix", str(tmp_path / "o")]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    quiet = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    loud = subprocess.run(argv + ["-v"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    line = ("optimize_image.py: error: --model tests.models.user_models:raises: raises() raised ValueError: no "
            "weights for this size\n")
    assert (quiet.returncode, quiet.stderr) == (2, line)
    assert loud.returncode == 2 and loud.stderr.endswith(line)
    assert "Traceback" in loud.stderr and 'raise ValueError("no weights for this size")' in loud.stderr
    assert not list(tmp_path.iterdir())


def test_pickle_payload_marker_is_real(tmp_path, marker):
    """The tests' payload does create the marker when unpickled whole, so its absence above means something."""
    pickle.loads(pickle.dumps(Payload(str(marker)))).close()  # the file the payload opened
    assert marker.exists()
