"""The input size of a model without an input contract (models/input_size.py): the user's size, else the model's
declaration (torchvision's image_size, timm's patch embedding / pretrained_cfg, default_size / input_size), else the
first image, else 224; and a size the model refuses as one line, in the library and on both command lines."""

import logging
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from dvtoolbox.cli.optimize_image import main as optimize_main
from dvtoolbox.cli.visualize import main as visualize_main
from dvtoolbox.errors import UsageError
from dvtoolbox.models.adapter import IMAGENET_MEAN, IMAGENET_STD, as_model
from dvtoolbox.models.input_size import as_hw, declared_size, input_size, npy_image_size
from dvtoolbox.models.load import load_model
from dvtoolbox.optvis import FeatureViz
from tests.models.user_models import declares_24x20, silent_16, timm_vit32, tiny_sequential, vit32

USER = "tests.models.user_models:"


class Declares(nn.Module):
    """An empty module with the given attributes."""

    def __init__(self, **attributes):
        super().__init__()
        for name, value in attributes.items():
            setattr(self, name, value)


# ---------------------------------------------------------------------------------------------------- the rules


@pytest.mark.parametrize("value, hw", [(32, (32, 32)), ((24, 20), (24, 20)), ([3, 24, 20], (24, 20)),
                                       (np.int64(7), (7, 7)), (0, None), (-3, None), (True, None), (2.5, None),
                                       ("32", None), ((1,), None), ((3, 0, 4), None), ((1, 2, 3, 4), None),
                                       ((24.0, 20), None)])
def test_as_hw_takes_a_side_hw_or_chw(value, hw):
    assert as_hw(value) == hw


@pytest.mark.parametrize("attributes, hw, source", [
    ({"default_size": 40}, (40, 40), "its default_size attribute"),
    ({"input_size": (3, 28, 36)}, (28, 36), "its input_size attribute"),
    ({"image_size": 32}, (32, 32), "its image_size attribute"),
    ({"pretrained_cfg": {"input_size": (3, 40, 48)}}, (40, 48), "its pretrained_cfg['input_size'] (timm)"),
    ({"default_cfg": {"input_size": (3, 56, 56)}}, (56, 56), "its default_cfg['input_size'] (timm)"),
    ({"default_size": 40, "pretrained_cfg": {"input_size": (3, 48, 48)}}, (40, 40), "its default_size attribute"),
    ({}, None, None),
    ({"pretrained_cfg": {"mean": (0.5, 0.5, 0.5)}}, None, None),
])
def test_declared_sizes(attributes, hw, source):
    assert declared_size(Declares(**attributes)) == (None if hw is None else (hw, source))


def test_a_malformed_declaration_is_ignored_with_a_log_line(caplog):
    with caplog.at_level(logging.WARNING, logger="dvtoolbox.models.input_size"):
        assert input_size(Declares(default_size="big")) == ((224, 224), "the default")
    assert "default_size = 'big' is not a side" in caplog.text


def test_torchvision_and_timm_declarations():
    assert declared_size(vit32()) == ((32, 32), "its image_size attribute")
    timm = pytest.importorskip("timm")
    vit = timm_vit32()
    assert vit.pretrained_cfg["input_size"] == (3, 224, 224)              # timm keeps its default config ...
    assert declared_size(vit) == ((32, 32), "its patch_embed.img_size (timm)")  # ... the model asserts 32
    dynamic = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=1,
                                embed_dim=16, num_heads=2, dynamic_img_size=True)
    assert declared_size(dynamic) == ((224, 224), "its pretrained_cfg['input_size'] (timm)")  # takes any size


def test_the_order_given_declared_first_image_default():
    assert input_size(vit32(), size=64) == ((64, 64), "the size given")
    assert input_size(vit32(), size=(64, 48), first_image=(16, 16)) == ((64, 48), "the size given")
    assert input_size(vit32(), first_image=(16, 16)) == ((32, 32), "its image_size attribute")
    assert input_size(tiny_sequential(), first_image=(16, 12)) == ((16, 12), "the first image")
    assert input_size(tiny_sequential(), first_image=12) == ((12, 12), "the first image")
    assert input_size(tiny_sequential()) == ((224, 224), "the default")
    with pytest.raises(UsageError, match=r"size must be a side or \(H, W\) of positive integers, got 0"):
        input_size(tiny_sequential(), size=0)


def test_npy_image_size_reads_the_header_of_a_chw_array(tmp_path):
    np.save(tmp_path / "x0.npy", np.zeros((3, 16, 12)))
    np.save(tmp_path / "flat.npy", np.zeros((16, 12)))
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    assert npy_image_size(str(tmp_path / "x0.npy")) == (16, 12)
    for path in ("flat.npy", "junk.npy", "absent.npy"):
        assert npy_image_size(str(tmp_path / path)) is None
    assert npy_image_size("mean_plus_rand") is None


def test_as_model_says_where_the_size_came_from(caplog):
    with caplog.at_level(logging.WARNING, logger="dvtoolbox.models.adapter"):
        assert as_model(vit32()).input_contract.size == (32, 32)
        assert as_model(declares_24x20()).input_contract.size == (24, 20)
        assert as_model(tiny_sequential(), first_image=(16, 12)).input_contract.size == (16, 12)
        assert as_model(vit32(), size=64).input_contract.size == (64, 64)
        assert load_model(USER + "silent_16", first_image=16).input_contract.size == (16, 16)
    said = [record.getMessage() for record in caplog.records]
    assert "VisionTransformer has no input_contract" in said[0]
    assert "32x32 (size from its image_size attribute" in said[0]
    assert "24x20 (size from its default_size attribute" in said[1]
    assert "16x12 (size from the first image" in said[2]
    assert "64x64 (size from the size given" in said[3]
    assert "16x16 (size from the first image" in said[4]


# ---------------------------------------------------------------------------------------------------- the library


def _encoder_channel_reference(vit: nn.Module, image: torch.Tensor, channel: int) -> float:
    """torchvision's ViT on (image - mean) / std: the mean over the 16 patch tokens (the class token left out) of
    ``channel`` of encoder_layer_0's output, as lucid's channel objective reads a token layer."""
    out = {}
    handle = vit.encoder.layers.encoder_layer_0.register_forward_hook(lambda m, i, o: out.setdefault("t", o))
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        vit((image - mean) / std)
    handle.remove()
    return float(out["t"][0, 1:, channel].mean())


def test_featureviz_takes_a_vit_built_for_32_pixels():
    vit = vit32()
    fv = FeatureViz(model=vit, objective="encoder.layers.encoder_layer_0:3")
    assert fv.contract.size == (32, 32)
    layout = fv.layouts["encoder.layers.encoder_layer_0"]
    assert (layout.kind, layout.prefix, layout.grid) == ("NTC", 1, (4, 4))
    image0 = torch.from_numpy(np.random.RandomState(2).uniform(0.2, 0.8, (1, 3, 32, 32)).astype(np.float32))
    param = torch.logit(image0).requires_grad_(True)
    (image,) = fv.visualize(lambda: ([param], lambda: torch.sigmoid(param)), thresholds=[2], transforms=[])
    assert image.shape == (1, 32, 32, 3) and np.isfinite(image).all()
    assert fv.history[0] == pytest.approx(_encoder_channel_reference(vit, image0, 3), rel=1e-4, abs=1e-5)


def test_featureviz_takes_timms_vit_at_32_pixels():
    pytest.importorskip("timm")
    fv = FeatureViz(model=timm_vit32(), objective="blocks.0:1")
    assert fv.contract.size == (32, 32) and fv.layouts["blocks.0"].grid == (4, 4)
    (image,) = fv.visualize(thresholds=[2])
    assert image.shape == (1, 32, 32, 3) and np.isfinite(image).all()


@pytest.mark.parametrize("make, size, message", [
    (vit32, 64, "the model cannot take 64x64 input: it expects 32x32: set size to 32 (AssertionError: Wrong image "
                "height! Expected 32 but got 64!)"),
    (timm_vit32, 48, "the model cannot take 48x48 input: it expects 32x32: set size to 32 (AssertionError: Input "
                     "height (48) doesn't match model (32).)"),
    (silent_16, None, "the model cannot take 224x224 input: set size to the size it takes (AssertionError: this "
                      "net takes (16, 16) images)"),
    (None, None, "the model cannot take 224x224 input: set size to the size it takes (RuntimeError: mat1 and mat2 "
                 "shapes cannot be multiplied"),
])
def test_featureviz_refuses_a_size_in_one_line(make, size, message):
    if make is timm_vit32:
        pytest.importorskip("timm")
    module = make() if make is not None else nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))  # 8x8 only
    objective = {vit32: "heads:0", timm_vit32: "head:0", silent_16: "fc:0", None: "1:0"}[make]
    with pytest.raises(UsageError) as info:
        FeatureViz(model=module, objective=objective, size=size)
    assert message in str(info.value) and "\n" not in str(info.value) and info.value.fields == ("size",)


# ---------------------------------------------------------------------------------------------------- command lines


def _optimize(tmp_path, *flags):
    argv = ["--push-channel", "1", "--max-iter", "2", "--output-prefix", str(tmp_path / "out" / "o"),
            "--device", "cpu", *flags]
    return optimize_main(argv, settings_dirs=[])


def _visualize(tmp_path, *flags):
    argv = ["--steps", "2", "--transforms", "none", "--device", "cpu", "--output-dir", str(tmp_path / "out"),
            *flags]
    try:
        return visualize_main(argv)
    except SystemExit as exc:
        return exc.code


def _x0(tmp_path):
    """x0 of the one unit optimize_image.py wrote (its info_big pickle)."""
    (path,) = (tmp_path / "out").glob("*_info_big.pkl")
    with open(path, "rb") as handle:
        return pickle.load(handle)[1].x0


@pytest.mark.parametrize("factory, push, shape", [("vit32", ["--push-layer", "heads"], (3, 32, 32)),
                                                  ("timm_vit32", ["--push-layer", "head"], (3, 32, 32)),
                                                  ("declares_24x20", ["--push-layer", "fc"], (3, 24, 20))])
def test_optimize_takes_the_models_own_size(tmp_path, factory, push, shape):
    if factory == "timm_vit32":
        pytest.importorskip("timm")
    assert _optimize(tmp_path, "--model", USER + factory, *push) == 0
    assert _x0(tmp_path).shape == shape


def test_optimize_takes_a_silent_models_size_from_its_start_image(tmp_path):
    x0 = np.random.RandomState(4).normal(0, 10, (3, 16, 16))
    np.save(tmp_path / "x0.npy", x0)
    assert _optimize(tmp_path, "--model", USER + "silent_16", "--push-layer", "fc",
                     "--start-at", str(tmp_path / "x0.npy")) == 0
    np.testing.assert_array_equal(_x0(tmp_path), x0)


def test_optimize_gives_a_silent_conv_net_224(tmp_path, capsys):
    assert _optimize(tmp_path, "--model", USER + "tiny_sequential", "--list-layers") == 0
    assert ["0", "4x224x224", "NCHW"] in [line.split() for line in capsys.readouterr().out.splitlines()]


def test_visualize_takes_the_models_own_size(tmp_path):
    from dvtoolbox.io.images import load_image_rgb

    assert _visualize(tmp_path, "--model", USER + "vit32", "--objective", "encoder.layers.encoder_layer_0:3") == 0
    assert load_image_rgb(str(tmp_path / "out" / "viz_step2_0.png")).shape == (32, 32, 3)
    # --size is the image's: a 48-pixel image, centre-cropped to the 32 pixels the model declares
    assert _visualize(tmp_path, "--model", USER + "vit32", "--objective", "heads:1", "--size", "48", "--brave") == 0
    assert load_image_rgb(str(tmp_path / "out" / "viz_step2_0.png")).shape == (48, 48, 3)


def test_visualize_gives_a_silent_model_its_size(tmp_path, capsys):
    assert _visualize(tmp_path, "--model", USER + "silent_16", "--objective", "fc:0", "--size", "16") == 0
    assert _visualize(tmp_path, "--model", USER + "tiny_sequential", "--size", "12", "--list-layers") == 0
    assert ["0", "4x12x12", "NCHW"] in [line.split() for line in capsys.readouterr().out.splitlines()]


@pytest.mark.parametrize("flags, parts", [
    (["--model", USER + "vit32", "--push-layer", "heads", "--data-size", "(64,64)"],
     ["the model cannot take 64x64 input: it expects 32x32: set --data-size to (32,32)", "Expected 32 but got 64"]),
    (["--model", USER + "vit32", "--data-size", "(64,64)", "--list-layers"],
     ["64x64 input: it expects 32x32: set --data-size to (32,32)"]),
    (["--model", USER + "timm_vit32", "--push-layer", "head", "--data-size", "(48,48)"],
     ["48x48 input: it expects 32x32: set --data-size to (32,32)", "doesn't match model (32)"]),
    (["--model", USER + "declares_24x20", "--push-layer", "fc", "--data-size", "(24,24)"],
     ["24x24 input: it expects 24x20: set --data-size to (24,20)", "this net takes (24, 20) images"]),
    (["--model", USER + "silent_16", "--push-layer", "fc"],
     ["224x224 input: set --data-size to the size it takes (AssertionError: this net takes (16, 16) images)"]),
])
def test_optimize_refuses_a_size_in_one_line(tmp_path, capsys, flags, parts):
    if "timm" in " ".join(flags):
        pytest.importorskip("timm")
    assert _optimize(tmp_path, *flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("optimize_image.py: error: ") and err.count("\n") == 1, err
    assert all(part in err for part in parts), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags, parts", [
    (["--model", USER + "vit32", "--objective", "heads:0", "--size", "64", "--no-resize"],
     ["--no-resize: the model cannot take 64x64 images", "Expected 32 but got 64", "give --size 32"]),
    (["--model", USER + "timm_vit32", "--objective", "head:0", "--size", "48", "--no-resize"],
     ["the model cannot take 48x48 images", "doesn't match model (32)", "give --size 32"]),
    (["--model", USER + "silent_16", "--objective", "fc:0"],
     ["the model cannot take 224x224 input: set --size to the size it takes (AssertionError: this net takes"]),
    (["--model", USER + "silent_16", "--list-layers"], ["224x224 input: set --size to the size it takes"]),
])
def test_visualize_refuses_a_size_in_one_line(tmp_path, capsys, flags, parts):
    if "timm" in " ".join(flags):
        pytest.importorskip("timm")
    assert _visualize(tmp_path, *flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("visualize.py: error: ") and err.count("\n") == 1, err
    assert all(part in err for part in parts), err
    assert not (tmp_path / "out").exists()


def test_a_contract_models_own_size_is_named(tmp_path, capsys):
    """tiny_test declares an 8x8 contract and its fc8 takes 8x8 only: --data-size (12,12) names 8x8."""
    assert _optimize(tmp_path, "--model", "tiny_test", "--push-layer", "fc8", "--data-size", "(12,12)") == 2
    err = capsys.readouterr().err
    assert "the model cannot take 12x12 input: it expects 8x8: set --data-size to (8,8) (RuntimeError: mat1" in err
    assert err.count("\n") == 1 and not (tmp_path / "out").exists()
