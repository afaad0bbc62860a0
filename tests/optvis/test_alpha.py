"""Transparent feature visualisation (lucid's alpha notebook): RGBA parameterisation and prior samples,
backgrounds, the composite and its stopped gradients, the alpha-mean penalty, experiments 1 and 2 on the tiny
model, seeding, and the RGBA image files."""

import numpy as np
import pytest
import torch

from dvtoolbox.errors import UsageError
from dvtoolbox.io.images import (checkerboard, composite_over, load_image_rgba, over_checkerboard, over_white,
                                 save_rgba_png, tile_images, to_uint8)
from dvtoolbox.models.capture import LayerCapture
from dvtoolbox import objectives as obj
from dvtoolbox.optvis.alpha import (alpha_experiment, alpha_experiment_2, alpha_mean_penalty,
                                    composite_with_stopped_gradients, image_sample_grid, render_transparent,
                                    shared_foregrounds, transparent_objective)
from dvtoolbox.optvis.backgrounds import (CLI_BACKGROUNDS, EXPERIMENT2_BACKGROUNDS, TEST_BACKGROUNDS,
                                          background_by_name, make_bg_func)
from dvtoolbox.models.pixel_space import to_model_input
from dvtoolbox.objectives import Activations
from dvtoolbox.optvis.param import get_image, image_sample, param_defaults
from dvtoolbox.optvis.param.color import COLOR_CORRELATION_NORMALIZED
from tests.conftest import make_tiny

pytestmark = pytest.mark.filterwarnings("error")

W = 8
TINY = dict(w=W, transforms=[], resize_to_contract=True)


def gen(seed=0):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_fft_raw(spectrum, h, w, decay_power):
    """numpy reference of fft_image's raw values from its (N, C, H, W//2+1, 2) parameter."""
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    scale = 1.0 / np.maximum(np.sqrt(fx * fx + fy * fy), 1.0 / max(h, w)) ** decay_power
    spec = spectrum[..., 0].astype(np.float64) + 1j * spectrum[..., 1]
    return np.fft.irfft2(spec * scale, s=(h, w), norm="ortho") / 4.0


def unit_value(model, layer, channel, images):
    """channel ``channel`` of ``layer`` (mean over positions) for each of the (N, 3, 8, 8) images in [0, 1]."""
    with LayerCapture(model, [layer]) as cap, torch.no_grad():
        model(to_model_input(images, model.input_contract))
    return cap.outputs[layer][:, channel].reshape(images.shape[0], -1).mean(1)


# -------------------------------------------------------------------------------------------- 1. RGBA, samples


def test_get_image_alpha_is_rgb_through_colour_path_and_sigmoid_alpha():
    params, image_f = get_image(6, alpha=True, generator=gen(1))
    image = image_f().detach().numpy()
    assert image.shape == (1, 4, 6, 6) and image.min() > 0 and image.max() < 1
    raw = np_fft_raw(params[0].detach().numpy(), 6, 6, 1.0)          # (1, 4, 6, 6)
    rgb = np.einsum("ck,nkhw->nchw", COLOR_CORRELATION_NORMALIZED.astype(np.float64), raw[:, :3])
    np.testing.assert_allclose(image[:, :3], sigmoid(rgb), atol=1e-6)
    np.testing.assert_allclose(image[:, 3], sigmoid(raw[:, 3]), atol=1e-6)


def test_image_sample_grid_is_the_notebook_first_cell():
    grid = image_sample_grid(w=6, n=4, seed=2)
    assert grid.shape == (6, 4, 6, 6, 3) and grid.dtype == np.float32
    assert np.all(grid[:, 0] == 0.5)                                  # sd 0: flat grey
    # independent reference: the same draws in the same order, raw values recomputed in numpy
    g = gen(2)
    for r, (decorrelate, dp) in enumerate([(d, p) for d in (False, True) for p in (1, 1.5, 2)]):
        for k in range(4):
            sd = 20.0 ** (1 - dp) * k / 20.0
            spectrum = torch.randn((1, 3, 6, 4, 2), generator=g).numpy() * sd
            raw = np_fft_raw(spectrum, 6, 6, dp)
            if decorrelate:
                raw = np.einsum("ck,nkhw->nchw", COLOR_CORRELATION_NORMALIZED.astype(np.float64), raw)
            np.testing.assert_allclose(grid[r, k], sigmoid(raw[0]).transpose(1, 2, 0), atol=1e-6)
    # larger k, more contrast, within every row
    spread = grid.reshape(6, 4, -1).std(-1)
    assert np.all(np.diff(spread, axis=1) > 0)
    assert np.array_equal(grid, image_sample_grid(w=6, n=4, seed=2))


# -------------------------------------------------------------------------------------------- 2. backgrounds


def test_colour_background_is_one_optimisable_colour():
    bg = make_bg_func(noise_ratio=0.0, var_mode="color")(W, generator=gen(3))
    assert [tuple(p.shape) for p in bg.params] == [(1, 3, 5, 3, 2)]      # a 5 x 5 Fourier image
    _, five = get_image(5, generator=gen(3))
    image = bg.draw(gen(9))
    assert image.shape == (1, 3, W, W)
    expected = five()[0, :, 3, 3].detach()
    assert torch.equal(image[0].detach(), expected[:, None, None].expand(3, W, W))


def test_image_background_full_and_random_offset():
    full = make_bg_func(noise_ratio=0.0, var_mode="image", var_image_jitter=0)(W, generator=gen(4))
    a, b = full.draw(gen(0)), full.draw(gen(1))
    assert a.shape == (1, 3, W, W) and torch.equal(a, b)                 # always the same place
    _, big = get_image(W + 5, generator=gen(4))
    big = big().detach()
    offset = make_bg_func(noise_ratio=0.0, var_mode="image", var_image_jitter=5)(W, generator=gen(4))
    seen = set()
    for s in range(40):
        draw = offset.draw(gen(s)).detach()
        ref = gen(s)                                                      # the crop's (top, left), drawn in order
        top, left = int(torch.randint(6, (1,), generator=ref)), int(torch.randint(6, (1,), generator=ref))
        assert torch.equal(draw, big[..., top:top + W, left:left + W])
        seen.add((top, left))
    assert len(seen) > 10


def test_noise_background_is_a_fresh_sample_each_step_and_mixes_linearly():
    noise = make_bg_func(noise_ratio=1.0, decay_power=2, base_sd=0.1, var_mode="color")(W, generator=gen(0))
    assert noise.params == []
    expected = image_sample((1, 3, W, W), sd=0.1 * 20 ** -1, decay_power=2, generator=gen(7))
    assert torch.equal(noise.draw(gen(7)), expected)
    assert not torch.equal(noise.draw(gen(7)), noise.draw(gen(8)))
    mixed = make_bg_func(noise_ratio=0.3, decay_power=1.5, base_sd=0.8, var_mode="image")(W, generator=gen(5))
    _, var_f = get_image(W, generator=gen(5))
    sample = image_sample((1, 3, W, W), sd=0.8 * 20 ** -0.5, decay_power=1.5, generator=gen(6))
    torch.testing.assert_close(mixed.draw(gen(6)), 0.7 * var_f() + 0.3 * sample, rtol=0, atol=1e-6)


def test_background_tables_and_errors():
    assert [name for name, _, _ in TEST_BACKGROUNDS] == [
        "adversarial image full", "adversarial image random offset", "adversarial color", "noise", "allied color",
        "allied image random offset", "allied image full"]
    assert [adv for _, adv, _ in TEST_BACKGROUNDS] == [True] * 4 + [False] * 3
    assert [adv for adv, _ in EXPERIMENT2_BACKGROUNDS] == [True] * 5 + [False] * 3
    assert TEST_BACKGROUNDS[1][2].var_image_jitter == 128 and TEST_BACKGROUNDS[3][2].noise_sd == pytest.approx(0.005)
    assert set(CLI_BACKGROUNDS) == {"none", "noise", "image", "offset-image", "color"}
    with pytest.raises(UsageError, match="background must be one of"):
        background_by_name("checkers")
    with pytest.raises(UsageError, match="noise_ratio"):
        make_bg_func(noise_ratio=1.5)
    with pytest.raises(UsageError, match="var_mode"):
        make_bg_func(var_mode="texture")
    with pytest.raises(UsageError, match="var_image_jitter"):
        make_bg_func(var_image_jitter=-1)


# -------------------------------------------------------------------------------------------- 3. composite


def test_composite_values_and_independent_jitters():
    rgba = torch.rand((2, 4, 6, 6), generator=gen(0))
    bg = torch.rand((2, 3, 6, 6), generator=gen(1))
    out = composite_with_stopped_gradients(rgba, bg)
    assert out.shape == (4, 3, 6, 6)
    r, a, b = rgba[:, :3].numpy(), rgba[:, 3:].numpy(), bg.numpy()
    flat = r * a + (1 - a) * b
    np.testing.assert_allclose(out[0::2].numpy(), flat, atol=1e-7)     # foreground-trained elements
    np.testing.assert_allclose(out[1::2].numpy(), flat, atol=1e-7)     # background-trained elements
    jittered = composite_with_stopped_gradients(rgba, bg, jitter_n=2, generator=gen(5))
    ref, expected = gen(5), []
    crop = lambda t: t[..., top:top + 4, left:left + 4]  # noqa: E731
    for i in range(2):
        crops = []
        for t in (r[i], a[i], b[i]):          # rgb, alpha, background: one draw (top, left) each
            top, left = int(torch.randint(3, (1,), generator=ref)), int(torch.randint(3, (1,), generator=ref))
            crops.append(crop(t))
        expected += [crops[0] * crops[1] + (1 - crops[1]) * crops[2]] * 2
    np.testing.assert_allclose(jittered.numpy(), np.stack(expected), atol=1e-7)


def _scene_grads(model, adversarial=True, term_batch=0, penalty=False):
    """Gradients of one term of the objective w.r.t. the foreground and the background parameters."""
    with param_defaults(generator=gen(0)):
        fg_params, fg_f = get_image(W, alpha=True)
        bg = make_bg_func(noise_ratio=0.0, var_mode="image", var_image_jitter=3)(W)
    image = fg_f()
    batch = composite_with_stopped_gradients(image, bg.draw(gen(1)), jitter_n=1, generator=gen(2))
    batch = torch.nn.functional.interpolate(batch, size=(W, W), mode="bilinear", align_corners=False)
    with LayerCapture(model, ["conv1"]) as cap:
        model(to_model_input(batch, model.input_contract))
    acts = Activations({**cap.outputs, "input": image})
    term = alpha_mean_penalty(0.25) if penalty else obj.channel("conv1", 2, batch=term_batch)
    grads = torch.autograd.grad(term(acts), fg_params + bg.params, allow_unused=True)
    norm = lambda gs: sum(0.0 if g is None else g.abs().sum().item() for g in gs)  # noqa: E731
    return norm(grads[:len(fg_params)]), norm(grads[len(fg_params):])


def test_stopped_gradients_separate_foreground_and_background():
    model = make_tiny()
    fg, bg = _scene_grads(model, term_batch=0)
    assert fg > 1e-3 and bg == 0.0                 # element 0 trains the foreground only
    fg, bg = _scene_grads(model, term_batch=1)
    assert fg == 0.0 and bg > 1e-3                 # element 1 trains the background only
    fg, bg = _scene_grads(model, penalty=True)
    assert fg > 1e-3 and bg == 0.0                 # the alpha penalty reads the foreground


# -------------------------------------------------------------------------------------------- 3. objective


def test_alpha_penalty_and_objective_values():
    x = torch.zeros((2, 4, 2, 2))
    x[0, 3] = torch.tensor([[0.0, 1.0], [1.0, 1.0]])        # mean 0.75
    x[1, 3] = 0.25                                          # mean 0.25
    acts = Activations({"input": x[:1], "a": torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)})
    assert alpha_mean_penalty(0.25)(acts).item() == pytest.approx(0.25)
    assert alpha_mean_penalty(0.25)(Activations({"input": x})).item() == pytest.approx(0.25)   # summed over images
    unit = lambda b: obj.channel("a", 1, batch=b)  # noqa: E731
    ch0, ch1 = 4 * 1 + 1.5, 12 + 4 + 1.5             # mean of channel 1 of element 0 and 1
    adv = transparent_objective(unit, unit, [True])
    assert adv(acts).item() == pytest.approx(ch0 - ch1 - 1e4 * 0.25)
    allied = transparent_objective(unit, unit, [False], alpha_coef=2.0, alpha_target=0.5)
    assert allied(acts).item() == pytest.approx(ch0 + ch1 - 2.0 * 0.0625)
    with pytest.raises(UsageError, match="RGBA"):
        alpha_mean_penalty()(Activations({"input": x[:, :3]}))


# -------------------------------------------------------------------------------------------- 6. runs


@pytest.mark.parametrize("target", [0.25, 0.6])
def test_alpha_mean_lands_near_its_target(target):
    bg = TEST_BACKGROUNDS[2][2]
    result = alpha_experiment(make_tiny(), "conv1", 2, bg, steps=100, alpha_target=target, **TINY)
    assert result.rgba.shape == (1, W, W, 4) and result.backgrounds.shape == (1, W, W, 3)
    assert result.alpha_means[0] == pytest.approx(target, abs=0.01)
    assert result.alpha_means[0] == pytest.approx(float(result.rgba[..., 3].mean()))


def test_same_seed_same_rgba_bits_and_png(tmp_path):
    bg = TEST_BACKGROUNDS[1][2]
    run = lambda seed: alpha_experiment(make_tiny(), "conv1", 2, bg, steps=12, seed=seed, jitter_n=2,  # noqa: E731
                                        w=W, transforms=None, resize_to_contract=True)
    a, b, c = run(0), run(0), run(1)
    assert np.array_equal(a.rgba, b.rgba) and np.array_equal(a.backgrounds, b.backgrounds)
    assert a.history == b.history
    assert not np.array_equal(a.rgba, c.rgba)
    save_rgba_png(str(tmp_path / "a.png"), a.rgba[0])
    save_rgba_png(str(tmp_path / "b.png"), b.rgba[0])
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_adversarial_background_lowers_the_unit_allied_raises_it():
    model = make_tiny()
    image_bg = TEST_BACKGROUNDS[0][2]
    adv = alpha_experiment(model, "conv1", 2, image_bg, steps=80, bg_adv=True, jitter_n=0, **TINY)
    allied = alpha_experiment(model, "conv1", 2, image_bg, steps=80, bg_adv=False, jitter_n=0, **TINY)
    noise = make_bg_func(noise_ratio=1.0, decay_power=1.5, base_sd=0.3)(W, generator=gen(0))
    for result, sign in ((adv, -1), (allied, 1)):
        rgba = torch.from_numpy(result.rgba).permute(0, 3, 1, 2)
        learned = torch.from_numpy(result.backgrounds).permute(0, 3, 1, 2)
        randoms = torch.cat([noise.draw(gen(s)) for s in range(8)])
        on_learned = unit_value(model, "conv1", 2, composite_with_stopped_gradients(rgba, learned)[1:2])
        on_random = unit_value(model, "conv1", 2, composite_with_stopped_gradients(rgba.expand(8, 4, W, W),
                                                                                   randoms)[1::2])
        if sign < 0:
            assert on_learned.item() < on_random.min().item() - 0.1
        else:
            assert on_learned.item() > on_random.max().item() + 0.1


def test_experiment_2_batch_layout_shared_parameters_and_alpha():
    params0, f0 = shared_foregrounds(3, W, shared_param_coef=0.0, generator=gen(4))
    params1, f1 = shared_foregrounds(3, W, shared_param_coef=1.0, generator=gen(4))
    assert len(params0) == 4 * 4 and [tuple(p.shape) for p in params0[:4]] == [(1, 4, 8, 8), (1, 4, 4, 4),
                                                                              (1, 4, 2, 2), (1, 4, 1, 1)]
    logit = lambda t: torch.log(t / (1 - t)).detach().double()  # noqa: E731
    a0, a1 = logit(f0()[:, 3]), logit(f1()[:, 3])
    shared = a1 - a0                                                 # = the shared pyramid / 4, the same for all
    torch.testing.assert_close(shared[0], shared[1], rtol=0, atol=1e-5)
    torch.testing.assert_close(shared[0], shared[2], rtol=0, atol=1e-5)
    assert shared.abs().max() > 1e-3
    bg_list = [EXPERIMENT2_BACKGROUNDS[0], EXPERIMENT2_BACKGROUNDS[4], EXPERIMENT2_BACKGROUNDS[5]]
    result = alpha_experiment_2(make_tiny(), "conv1", 2, bg_list, steps=120, shared_param_coef=0.5, lr=0.1, **TINY)
    assert result.rgba.shape == (3, W, W, 4) and result.backgrounds.shape == (3, W, W, 3)
    assert result.adversarial == (True, True, False)
    assert all(m == pytest.approx(0.25, abs=0.02) for m in result.alpha_means)


def test_render_transparent_backgrounds_and_errors():
    model = make_tiny()
    none = render_transparent(model, "conv1:2", background="none", steps=5, **TINY)
    assert none.rgba.shape == (1, W, W, 4) and none.backgrounds is None and none.adversarial == ()
    color = render_transparent(model, "conv1:2:4:4", background="color", adversarial=False, steps=5, **TINY)
    assert color.backgrounds.shape == (1, W, W, 3) and color.adversarial == (False,)
    with pytest.raises(UsageError, match="background must be one of"):
        render_transparent(model, "conv1:2", background="plaid", **TINY)
    with pytest.raises(UsageError, match="batch -> Objective"):
        render_transparent(model, obj.channel("conv1", 2), **TINY)
    with pytest.raises(UsageError, match="jitter_n"):
        render_transparent(model, "conv1:2", jitter_n=W, **TINY)


# -------------------------------------------------------------------------------------------- 5. files


def test_rgba_png_checkerboard_white_and_tiles(tmp_path):
    rgba = np.random.RandomState(0).rand(5, 7, 4).astype(np.float32)
    path = str(tmp_path / "x.png")
    save_rgba_png(path, rgba)
    assert np.array_equal(load_image_rgba(path), to_uint8(rgba))      # the alpha channel is real
    board = checkerboard(5, 7, square=2)
    assert board.shape == (5, 7, 3) and board[0, 0, 0] == 1.0 and board[0, 2, 0] == 0.8 and board[2, 2, 0] == 1.0
    rgb, a = rgba[..., :3], rgba[..., 3:]
    np.testing.assert_allclose(over_checkerboard(rgba, 2), rgb * a + board * (1 - a), atol=1e-6)
    np.testing.assert_allclose(over_white(rgba), rgb * a + 1 - a, atol=1e-6)
    assert composite_over(rgba, 0.0).shape == (5, 7, 3)
    grid = tile_images([[np.zeros((2, 3, 3))], [np.zeros((2, 3, 3)), np.zeros((1, 1, 3))]], pad=1)
    assert grid.shape == (1 + 2 * 3, 1 + 2 * 4, 3)
    assert grid[1:3, 1:4].max() == 0 and grid[0].min() == 1 and grid[4, 5].max() == 0 and grid[5, 5].min() == 1
    with pytest.raises(ValueError, match=".png"):
        save_rgba_png(str(tmp_path / "x.jpg"), rgba)
    with pytest.raises(ValueError, match=r"\(H, W, 4\)"):
        save_rgba_png(path, rgba[..., :3])
