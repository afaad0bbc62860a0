"""Any nn.Module without ceremony: plain modules in FeatureViz, the jobs and both command lines (package.module:factory,
saved modules), the ecosystem's input convention checked in closed form, and models by name with local weights."""

import logging
import pickle
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from dvtoolbox.cli.optimize_image import main as optimize_main
from dvtoolbox.cli.visualize import main as visualize_main
from dvtoolbox.errors import UsageError
from dvtoolbox.models.adapter import IMAGENET_MEAN, IMAGENET_STD, PixelSpaceModel, as_model
from dvtoolbox.models.capture import named_layers
from dvtoolbox.models.load import load_model
from dvtoolbox.models.pixel_space import to_model_input
from dvtoolbox.optimize.job import OptimizeJob, run_job
from dvtoolbox.optimize.params import FindParams
from dvtoolbox.optvis import FeatureViz, get_image
from tests.conftest import make_tiny
from tests.models.user_models import tiny_sequential

FACTORY = "tests.models.user_models:tiny_sequential"


def test_a_plain_module_gets_the_ecosystems_convention_said_in_one_line(caplog):
    with caplog.at_level(logging.WARNING, logger="dvtoolbox.models.adapter"):
        model = as_model(tiny_sequential())
    (record,) = caplog.records
    assert "Sequential has no input_contract" in record.getMessage() and "0.485" in record.getMessage()
    assert model.input_contract.size == (224, 224) and model.input_contract.channel_order == "RGB"
    image = torch.from_numpy(np.random.RandomState(1).uniform(0, 1, (2, 3, 16, 16)).astype(np.float32))
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        ours = model(to_model_input(image, model.input_contract))
        theirs = model.net((image - mean) / std)                 # what the network is trained on
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert list(named_layers(model))[:5] == ["0", "1", "2", "3", "4"]  # the module's own names


def test_overrides_and_declared_contracts():
    model = as_model(tiny_sequential(), input_mean=(0.5, 0.5, 0.5), input_std=(0.25, 0.25, 0.25), size=32)
    assert model.input_contract.mean == (127.5, 127.5, 127.5) and model.input_contract.size == (32, 32)
    torch.testing.assert_close(model._normalize.std.flatten(), torch.full((3,), 63.75))
    tiny = make_tiny()
    assert as_model(tiny) is tiny  # a model that declares its contract keeps it
    with pytest.raises(UsageError, match="declares its own input contract"):
        as_model(tiny, input_mean=(0.5, 0.5, 0.5))
    with pytest.raises(UsageError, match=r"input_std must be > 0"):
        as_model(tiny_sequential(), input_std=(0.0, 1.0, 1.0))


def test_featureviz_takes_a_plain_module_and_any_expression():
    fv = FeatureViz(model=tiny_sequential(), objective="0:1 + 0.5 * 4:2")
    (image,) = fv.visualize(lambda: get_image(32), thresholds=[2], transforms=[])
    assert image.shape == (1, 32, 32, 3) and np.isfinite(image).all()
    assert fv.layouts["0"].kind == "NCHW" and fv.layouts["4"].kind == "NC"
    assert fv.history[1] > fv.history[0]


def test_load_model_from_a_factory_and_a_saved_module(tmp_path):
    assert isinstance(load_model(FACTORY), PixelSpaceModel)
    path = tmp_path / "net.pt"
    torch.save(tiny_sequential(), path)
    loaded = load_model(str(path))
    torch.testing.assert_close(loaded.net[0].weight, tiny_sequential()[0].weight)
    torch.save(tiny_sequential().state_dict(), tmp_path / "state.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated: users still have such files
        torch.jit.save(torch.jit.script(tiny_sequential()), tmp_path / "scripted.pt")
    for spec, message in [("tests.models.user_models:not_a_module", "returned a int, not an nn.Module"),
                          ("tests.models.nowhere:f", "cannot import tests.models.nowhere"),
                          ("tests.models.user_models:nothing", "has no callable 'nothing'"),
                          (str(tmp_path / "state.pth"), "holds a state dict, not a module"),
                          (str(tmp_path / "scripted.pt"), "is TorchScript"),
                          (str(tmp_path / "absent.pt"), "no such file")]:
        with pytest.raises(UsageError, match=message) as info:
            load_model(spec)
        assert "\n" not in str(info.value)


def test_optimize_job_with_a_module_object(tmp_path):
    params = FindParams(push_layer="4", push_channel=1, max_iter=2, lr_params={"lr": 10.0})
    (result,), files = run_job(OptimizeJob(params=params, model=tiny_sequential(), data_size=(16, 16),
                                           output_prefix=str(tmp_path / "o"), progress=False))
    assert result.idxmax[0][1:] == (0, 0) and len(result.obj) == 2 and files


def test_both_command_lines_take_a_factory(tmp_path, capsys):
    common = ["--model", FACTORY, "--input-mean", "(0.5,0.5,0.5)", "--input-std", "(0.5,0.5,0.5)"]
    assert optimize_main(common + ["--data-size", "(16,16)", "--push-layer", "0", "--push-channel", "2",
                                   "--push-spatial", "(8,8)", "--max-iter", "2", "--output-prefix",
                                   str(tmp_path / "o")], settings_dirs=[]) == 0
    with open(tmp_path / "o_0_0002_0_info_big.pkl", "rb") as handle:
        params, results = pickle.load(handle)
    assert params.push_unit == (2, 8, 8) and results.x0.shape == (3, 16, 16)
    assert visualize_main(common + ["--objective", "0:1 - 4:0", "--steps", "2", "--size", "16", "--no-resize",
                                    "--transforms", "none", "--output-dir", str(tmp_path / "v")]) == 0
    assert (tmp_path / "v" / "viz_step2_0.png").is_file()
    assert optimize_main(common + ["--list-layers"], settings_dirs=[]) == 0
    assert ["4", "3", "NC"] in [line.split() for line in capsys.readouterr().out.splitlines()]


@pytest.mark.parametrize("flags, message", [
    (["--model", "tests.models.user_models:not_a_module"], "--model tests.models.user_models:not_a_module: "
                                                           "not_a_module() returned a int"),
    (["--model", "tests.models.user_models:tiny_sequential", "--input-std", "(1,2)"], "--input-std must be 3"),
    (["--model", "tests.models.user_models:tiny_sequential", "--push-layer", "4", "--push-channel", "3"],
     "--push-channel 3 is out of range: layer '4' has 3 channels"),
    (["--layout", "fc8"], "--layout 'fc8': write NAME=KIND"),
    (["--layout", "fc9=NC"], "--layout: 'fc9' is not a layer of the model"),
    (["--model", "tests.models.user_models:tiny_sequential", "--push-layer", "4", "--push-spatial", "3"],
     "--push-spatial 3: layer '4' is NC, not a token layer"),
])
def test_bad_model_input_is_one_line_exit_2(tmp_path, capsys, flags, message):
    base = ["--model", "tiny_test", "--push-channel", "1", "--max-iter", "2", "--output-prefix", str(tmp_path / "o")]
    assert optimize_main(base + flags, settings_dirs=[]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not list(tmp_path.iterdir())


def test_named_models_take_local_weight_files(tmp_path):
    pytest.importorskip("timm")
    from dvtoolbox.models.registry import create_model

    torch.manual_seed(3)
    reference = create_model("timm:vit_tiny_patch16_224", weights=None)
    torch.save(reference.net.state_dict(), tmp_path / "vit.pth")
    loaded = create_model("timm:vit_tiny_patch16_224", weights=str(tmp_path / "vit.pth"))
    torch.testing.assert_close(loaded.net.head.weight, reference.net.head.weight)
    assert loaded.input_contract.mean == (127.5, 127.5, 127.5)   # timm's pretrained_cfg: mean 0.5
    assert loaded.input_contract.labels[130] == "flamingo"
    with pytest.raises(UsageError, match="does not fit timm:vit_tiny_patch16_224"):
        create_model("timm:vit_tiny_patch16_224", weights=_resnet_state(tmp_path))


def _resnet_state(tmp_path):
    import torchvision

    path = tmp_path / "resnet.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return str(path)


def test_timm_default_weights_offline_is_one_line(monkeypatch):
    timm = pytest.importorskip("timm")
    from dvtoolbox.models.registry import create_model

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to the Hugging Face Hub")

    monkeypatch.setattr(timm, "create_model", lambda name, pretrained=False, **kw: offline() if pretrained
                        else nn.Linear(1, 1))
    with pytest.raises(UsageError, match="cannot get timm's pretrained weights for vit_tiny_patch16_224 .*offline"):
        create_model("timm:vit_tiny_patch16_224")


@pytest.mark.parametrize("kwargs, message", [
    (dict(input_mean=(float("nan"), 0.5, 0.5)), r"input_mean must be 3 finite numbers, got \(nan, 0.5, 0.5\)"),
    (dict(input_mean=(0.5, float("inf"), 0.5)), "input_mean must be 3 finite numbers"),
    (dict(input_mean=(0.5, 0.5)), "input_mean must be 3 finite numbers"),
    (dict(input_mean="0.5"), "input_mean must be 3 finite numbers"),
    (dict(input_std=(0.2, 0.2, float("-inf"))), "input_std must be 3 finite numbers"),
    (dict(input_std=(0.2, 0.2, np.float32("nan"))), "input_std must be 3 finite numbers"),
    (dict(input_std=(0.2, True, 0.2)), "input_std must be 3 finite numbers"),
    (dict(input_std=(0.2, -0.1, 0.2)), "input_std must be > 0"),
])
def test_the_library_refuses_non_finite_input_mean_and_std(kwargs, message):
    """What the command lines refuse in --input-mean / --input-std, the library refuses too (as_model, wrap)."""
    with pytest.raises(UsageError, match=message) as info:
        as_model(tiny_sequential(), **kwargs)
    assert info.value.fields == (next(iter(kwargs)),)
    assert as_model(tiny_sequential(), input_std=(0.2, np.float32(0.25), 1)).input_contract.size == (224, 224)
