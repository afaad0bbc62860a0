"""Feature accentuation: the start image's parameterisation, the pair pre-transform, the objective with
its feature distance, zero push, seeds, and the command line."""

import os

import numpy as np
import pytest
import torch

from dvtoolbox.errors import UsageError
from dvtoolbox.optvis.accentuate import (StartPair, accentuate, accentuation_objective, default_layer,
                                         feature_distance, start_image_param)
from dvtoolbox.objectives import Activations, channel

PHOTO = os.path.join(os.path.dirname(__file__), "..", "data", "images", "ILSVRC2012_val_00000610.jpg")


def start(seed=0, shape=(8, 8, 3)):
    return np.random.RandomState(seed).rand(*shape)


@pytest.mark.parametrize("h, w", [(8, 8), (7, 9)])
def test_start_image_param_reproduces_the_clipped_start(h, w):
    s = start(1, (2, h, w, 3))
    s[0, 0, 0] = [0.0, 1.0, 0.5]                        # clipped to [1/255, 254/255]
    _, image_f = start_image_param(s)
    out = image_f().detach().permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(out, np.clip(s, 1 / 255, 254 / 255), atol=2e-6)


def test_zero_push_returns_the_start_image(tiny_model):
    s = start()
    result = accentuate(tiny_model, 0 * channel("fc8", 2), s, layer="conv1", coef=1.0, thresholds=[3, 6], lr=0.1,
                        views=2)
    assert np.array_equal(result.images[0], result.start) and np.array_equal(result.images[1], result.start)
    np.testing.assert_allclose(result.start[0], np.clip(s, 1 / 255, 254 / 255), atol=2e-6)
    assert result.history == [0.0] * 6


def test_push_moves_the_image_and_seeds_reproduce(tiny_model):
    def run(seed):
        return accentuate(tiny_model, "fc8:2", start(), layer="conv1", coef=1.0, thresholds=[4], lr=0.05, views=2,
                          seed=seed)

    a, b, c = run(0), run(0), run(1)
    assert np.array_equal(a.images[0], b.images[0]) and a.history == b.history
    assert not np.array_equal(a.images[0], c.images[0])
    assert not np.array_equal(a.images[0], a.start)


def test_objective_value_by_hand():
    """m = 2: scene rows 0, 1 the images, 2, 3 their starts; value = mean of fc8[:2, 1] - 0.5 * distance."""
    rng = np.random.RandomState(4)
    fc8 = torch.tensor(rng.randn(4, 5))
    conv = torch.tensor(rng.randn(4, 2, 3, 3))
    acts = Activations({"fc8": fc8, "conv1": conv, "input": torch.zeros(2, 3, 8, 8)})
    value = accentuation_objective(channel("fc8", 1), "conv1", 0.5, m=2)(acts).item()
    f, f0 = conv[:2].numpy(), conv[2:].numpy()
    expected = fc8[:2, 1].numpy().mean() - 0.5 * ((f - f0) ** 2).mean() / (f0 ** 2).mean()
    assert value == pytest.approx(expected, rel=1e-12)
    assert feature_distance(conv[2:], conv[2:]).item() == 0.0
    assert accentuation_objective("fc8:1", "conv1", 0.5, m=2).layers == {"fc8", "conv1"}


def test_start_pair_and_errors(tiny_model):
    image = torch.rand(2, 3, 8, 8)
    s = torch.rand(2, 3, 8, 8)
    assert torch.equal(StartPair(s)(image), torch.cat([image, s]))
    with pytest.raises(UsageError, match="differ in shape"):
        StartPair(s)(torch.rand(1, 3, 8, 8))
    with pytest.raises(UsageError, match="coef"):
        accentuation_objective("fc8:1", "conv1", -1.0, m=1)
    with pytest.raises(UsageError, match="conv9"):
        accentuation_objective("fc8:1", "conv9", 1.0, m=1, model=tiny_model)
    with pytest.raises(UsageError, match="accentuation layer"):
        default_layer(channel("fc8", 1) + channel("conv1", 0))
    assert default_layer("fc8:1") == "fc8"
    with pytest.raises(UsageError, match="start image"):
        start_image_param(np.full((8, 8, 3), 2.0))
    with pytest.raises(UsageError, match="start image"):
        start_image_param(np.zeros((8, 8)))


# ------------------------------------------------------------------------------------------------ command line
def run_cli(*argv):
    from dvtoolbox.cli.visualize import main

    return main(["--model", "tiny_test", "--objective", "fc8:2", "--steps", "3", "-v"] + list(argv))


def test_cli_start_image_writes_the_librarys_image(tmp_path):
    from dvtoolbox.io.images import load_image_rgb, resize_center_crop
    from dvtoolbox.optvis.transforms import preset_transforms

    assert run_cli("--start-image", PHOTO, "--accent-layer", "conv1", "--accent-coef", "0.5",
                   "--output-dir", str(tmp_path), "--transforms", "maco", "--views", "2") == 0
    written = sorted(os.listdir(tmp_path))
    assert written == ["viz_config.yaml", "viz_info.txt", "viz_start_0.png", "viz_step3_0.png"]
    photo = resize_center_crop(load_image_rgb(PHOTO), 8, round(8 * 256 / 224)).astype(np.float32) / 255.0
    from dvtoolbox.models.registry import create_model

    result = accentuate(create_model("tiny_test"), "fc8:2", photo, layer="conv1", coef=0.5, thresholds=[3],
                        lr=0.02, views=2, transforms=preset_transforms("maco"))   # recipe auto: accent's lr
    png = load_image_rgb(str(tmp_path / "viz_step3_0.png"))
    from dvtoolbox.io.images import to_uint8

    assert np.array_equal(png, to_uint8(result.images[0][0]))
    assert np.array_equal(load_image_rgb(str(tmp_path / "viz_start_0.png")), to_uint8(result.start[0]))
    assert run_cli("--start-image", PHOTO, "--accent-layer", "conv1", "--output-dir", str(tmp_path)) == 2  # no --brave


@pytest.mark.parametrize("argv, message", [
    (["--start-image", "nonexistent.jpg"], "no such file"),
    (["--start-image", PHOTO, "--param", "pixel"], "needs --param fft"),
    (["--start-image", PHOTO, "--batch", "2"], "--batch must be 1 or 1"),
    (["--start-image", PHOTO, "--accent-coef", "-1"], "--accent-coef"),
    (["--accent-layer", "conv1"], "needs --start-image"),
    (["--start-image", PHOTO, "--accent-layer", "conv9"], "conv9"),
    (["--param", "maco", "--no-decorrelate"], "--no-decorrelate"),
    (["--recipe", "accent"], "give --start-image"),
])
def test_cli_errors(tmp_path, capsys, argv, message):
    assert run_cli("--output-dir", str(tmp_path / "out"), *argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "out").exists()


def test_cli_maco_writes_transparency_and_reproduces(tmp_path):
    args = ["--param", "maco", "--batch", "2", "--transforms", "maco", "--views", "2", "--lr", "0.1"]
    assert run_cli("--output-dir", str(tmp_path / "a"), *args) == 0
    assert run_cli("--output-dir", str(tmp_path / "b"), *args) == 0
    names = sorted(os.listdir(tmp_path / "a"))
    assert names == ["viz_config.yaml", "viz_info.txt", "viz_step3_0.png", "viz_step3_0_transparency.png",
                     "viz_step3_1.png", "viz_step3_1_transparency.png"]
    for name in names[2:]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
