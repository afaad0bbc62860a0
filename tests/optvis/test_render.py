"""FeatureViz on the tiny fixed-weight model: the objective rises, seeds reproduce bit for bit, hooks go away,
errors; model input conversion; show_images."""

import numpy as np
import pytest
import torch

from dvtoolbox.errors import UsageError
from dvtoolbox.models.pixel_space import InputContract
from dvtoolbox.optvis import FeatureViz, create_objective, get_image, show_images
from dvtoolbox import objectives as obj
from dvtoolbox.optvis import show as show_module
from dvtoolbox.models.pixel_space import from_model_input, to_model_input
from dvtoolbox.objectives import Activations
from dvtoolbox.models.capture import LayerCapture
from tests.conftest import make_tiny

pytestmark = pytest.mark.filterwarnings("error")


def n_hooks(model):
    return sum(len(m._forward_hooks) for m in model.modules())


def evaluate(model, objective, image01):
    """The objective on (N, H, W, 3) numpy images, without transforms."""
    image = torch.from_numpy(np.ascontiguousarray(image01.transpose(0, 3, 1, 2)))
    with LayerCapture(model, sorted(objective.layers - {"input"})) as cap, torch.no_grad():
        model(to_model_input(image, model.input_contract))
    return objective(Activations({**cap.outputs, "input": image})).item()


# -------------------------------------------------------------------------------------------- model input


def test_to_model_input_rgb_and_bgr():
    image = torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1)
    rgb = InputContract(size=(1, 1), channel_order="RGB", mean=(10.0, 20.0, 30.0))
    assert to_model_input(image, rgb).flatten().tolist() == [-10.0, 107.5, 225.0]
    bgr = InputContract(size=(1, 1), channel_order="BGR", mean=(10.0, 20.0, 30.0))  # mean in model (B, G, R) order
    assert to_model_input(image, bgr).flatten().tolist() == [245.0, 107.5, -30.0]
    for contract in (rgb, bgr):
        assert torch.allclose(from_model_input(to_model_input(image, contract), contract), image)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\) RGB image"):
        to_model_input(torch.zeros(1, 4, 2, 2), rgb)


# -------------------------------------------------------------------------------------------- visualize


def test_visualize_raises_the_objective():
    model = make_tiny()
    fv = FeatureViz(model=model, objective="conv1:2")
    images = fv.visualize(thresholds=(1, 40), lr=0.05, transforms=[])
    assert [im.shape for im in images] == [(1, 8, 8, 3), (1, 8, 8, 3)]
    assert all(im.dtype == np.float32 and im.min() > 0 and im.max() < 1 for im in images)
    assert len(fv.history) == 40
    # without transforms, step 2's value is the objective of the image recorded after step 1
    assert fv.history[1] == pytest.approx(evaluate(model, fv.objective, images[0]), abs=1e-5)
    first, last = evaluate(model, fv.objective, images[0]), evaluate(model, fv.objective, images[1])
    assert last > first + 0.5
    assert all(b > a for a, b in zip(fv.history, fv.history[1:]))  # Adam on a smooth objective: monotone here
    assert all(p.grad is None for p in model.parameters())


def test_visualize_with_standard_transforms_and_default_param():
    # fit="resize": on an 8-pixel model lucid's 12-pixel grey pad is larger than the image, and the default centre
    # crop would show the neuron mostly padding; resizing keeps the whole image in view
    model = make_tiny()
    fv = FeatureViz(model="tiny_test", objective=obj.neuron("relu1", 1, batch=0) - 1e-3 * obj.total_variation(),
                    fit="resize")
    (image,) = fv.visualize(thresholds=[30], seed=3)
    assert image.shape == (1, 8, 8, 3)
    assert evaluate(model, fv.objective, image) > fv.history[0]


def test_same_seed_same_bits_other_seed_other_image_global_rng_untouched():
    fv = FeatureViz(model=make_tiny(), objective="fc8:1")
    state = torch.get_rng_state()
    run = lambda seed: fv.visualize(lambda: get_image(8, batch=2), thresholds=(3, 6), seed=seed)  # noqa: E731
    a, hist_a = run(0), fv.history
    b, hist_b = run(0), fv.history
    c = run(1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and hist_a == hist_b
    assert not np.array_equal(a[-1], c[-1])
    assert torch.equal(torch.get_rng_state(), state)


def test_positive_and_negative_batch_elements():
    # the torchlight README's example: raise the channel in image 0, lower it in image 1
    model = make_tiny()
    objective = create_objective("conv1:0", batch=0) - create_objective("conv1:0", batch=1)
    fv = FeatureViz(model=model, objective=objective)
    (images,) = fv.visualize(lambda: get_image(8, batch=2), thresholds=[40], transforms=[])
    plus = evaluate(model, obj.channel("conv1", 0, batch=0), images)
    minus = evaluate(model, obj.channel("conv1", 0, batch=1), images)
    assert plus > minus + 1.0


def test_alpha_images_come_back_rgba():
    fv = FeatureViz(model=make_tiny(), objective="conv1:1")
    (image,) = fv.visualize(lambda: get_image(8, alpha=True), thresholds=[3])
    assert image.shape == (1, 8, 8, 4)


def test_hooks_removed_and_mode_restored_also_on_error():
    model = make_tiny().train()
    fv = FeatureViz(model=model, objective="conv1:1")
    fv.visualize(thresholds=[2])
    assert n_hooks(model) == 0 and model.training

    def broken(acts):
        raise RuntimeError("boom")

    fv = FeatureViz(model=model, objective=broken)
    with pytest.raises(RuntimeError, match="boom"):
        fv.visualize(thresholds=[2])
    assert n_hooks(model) == 0 and model.training


def test_callable_objective_sees_every_layer():
    fv = FeatureViz(model=make_tiny(), objective=lambda acts: acts["relu1"].mean() + acts["fc8"][:, 0].mean())
    fv.visualize(thresholds=[2], transforms=[])
    assert len(fv.history) == 2


def test_errors():
    model = make_tiny()
    with pytest.raises(UsageError, match="unknown layer 'mixed4a'; valid layers: conv1, relu1, fc8, prob"):
        FeatureViz(model=model, objective="mixed4a:97")
    fv = FeatureViz(model=model, objective="conv1:1")
    for bad in ([], [3, 2], [0], (5, 5), [1.5]):
        with pytest.raises(UsageError, match=r"thresholds must be strictly increasing integers in \[1, 100000000\]"):
            fv.visualize(thresholds=bad)
    fv = FeatureViz(model=model, objective=lambda acts: acts["conv1"][:, 0].mean((1, 2)))
    with pytest.raises(UsageError, match=r"returned shape \(1,\), not a scalar"):
        fv.visualize(thresholds=[1])
    bare = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1))  # a plain module works (tests/optvis/test_any_model.py)
    with pytest.raises(UsageError, match="unknown layer 'weight'; valid layers: 0, _normalize"):
        FeatureViz(model=bare, objective="weight:0")


def test_custom_optimizer_and_contract():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]).view(2, 3, 1, 1))
        model[0].bias.zero_()
    contract = InputContract(size=(4, 4), channel_order="RGB", mean=(0.0, 0.0, 0.0))
    fv = FeatureViz(model=model, objective="0:0", contract=contract)
    (image,) = fv.visualize(lambda: get_image(4, fft=False, decorrelate=False), thresholds=[30], transforms=[],
                            optimizer=lambda params: torch.optim.SGD(params, lr=1.0))
    # channel 0 is the red channel * 255: red goes up, green and blue (no gradient) stay at their start
    assert image[..., 0].min() > 0.9
    assert np.abs(image[..., 1:] - 0.5).max() < 0.01


# -------------------------------------------------------------------------------------------- show_images


def test_show_images_writes_png(tmp_path, monkeypatch):
    images = np.random.RandomState(0).rand(3, 8, 8, 3).astype(np.float32)
    path = show_images(images, ["a", "b", "a and b"], path=str(tmp_path / "grid.png"))
    assert path == str(tmp_path / "grid.png")
    assert (tmp_path / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(show_module, "_has_display", lambda: False)
    assert show_images(images[:1]) == "./featureviz_0.png"
    assert show_images(torch.rand(2, 4, 8, 8)) == "./featureviz_1.png"  # a tensor batch, RGBA
    with pytest.raises(ValueError, match="got 2 labels for 3 images"):
        show_images(images, ["a", "b"])


def test_visualize_show_last_image_headless(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(show_module, "_has_display", lambda: False)
    FeatureViz(model=make_tiny(), objective="conv1:1").visualize(thresholds=[1], show_last_image=True)
    assert (tmp_path / "featureviz_0.png").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_visualize_on_cuda_is_reproducible():
    """Bit for bit without transforms; with them, to float rounding: the backward passes of CUDA's reflection pad,
    bilinear resize and grid_sample accumulate with atomics (the generator's draws are the same)."""
    fv = FeatureViz(model=make_tiny(), objective="conv1:1")
    runs = [fv.visualize(lambda: get_image(8, batch=2, alpha=True), thresholds=[4], device="cuda", seed=2,
                         transforms=tf) for tf in ([], [], None, None)]
    assert np.array_equal(runs[0][0], runs[1][0]) and runs[0][0].shape == (2, 8, 8, 4)
    np.testing.assert_allclose(runs[2][0], runs[3][0], rtol=0, atol=1e-5)
    assert not np.allclose(runs[0][0], runs[2][0], atol=1e-3)
