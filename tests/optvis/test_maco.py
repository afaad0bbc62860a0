"""MACO: the phase-only parameterisation, the shipped natural spectrum, the box crops and noise, the
transparency map; exact expectations computed with numpy / scipy."""

import math

import numpy as np
import pytest
import scipy.ndimage
import torch

from dvtoolbox.optvis import FeatureViz
from dvtoolbox.optvis.param.color import COLOR_CORRELATION_NORMALIZED
from dvtoolbox.optvis.param.maco import maco_image, self_conjugate_columns
from dvtoolbox.optvis.spectrum import (average_spectrum, load_natural_spectrum,
                                       natural_amplitude, power_law_fit, radial_profile, sample_quadrant,
                                       spectral_slope)
from dvtoolbox.optvis.transforms import crop_resize, maco_transforms, pixel_noise, random_box_crop


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------------ parameterisation
def expected_spectrum(image_f, shape):
    """The amplitude at every coefficient, and at DC the free mean colour's |m| sqrt(H W) (the amplitude's DC is 0)."""
    expected = np.broadcast_to(image_f.amplitude.numpy(), shape).copy()
    h, w = image_f.h, image_f.w
    mean = image_f.mean_colour()
    if mean is not None:
        assert np.all(image_f.amplitude.numpy()[:, 0, 0] == 0)
        expected[:, :, 0, 0] = np.abs(mean.detach().numpy()) * math.sqrt(h * w)
    return expected


@pytest.mark.parametrize("h, w", [(8, 8), (7, 9), (10, 7), (16, 12)])
@pytest.mark.parametrize("fixed_mean", [False, True])
def test_random_phase_image_has_exactly_the_amplitude(h, w, fixed_mean):
    _, image_f = maco_image(w, h, batch=2, generator=gen(), fixed_mean=fixed_mean)
    assert (image_f.mean_colour() is None) == fixed_mean
    z = image_f.decorrelated().detach().numpy().astype(np.float64)
    measured = np.abs(np.fft.rfft2(z, norm="ortho"))
    expected = expected_spectrum(image_f, measured.shape)
    np.testing.assert_allclose(measured, expected, rtol=0, atol=2e-6 * expected.max())


def test_free_mean_colour_starts_at_the_photographs_mean_and_stays_in_their_range():
    """C m = centre + half tanh(colour) per RGB logit, restated with numpy from the shipped logit_low / high; it
    starts at the photographs' mean and cannot leave low .. high however far the parameter goes; z's mean is m."""
    spectrum = load_natural_spectrum()
    low, high = spectrum["logit_low"], spectrum["logit_high"]
    c = COLOR_CORRELATION_NORMALIZED.astype(np.float64)
    params, image_f = maco_image(8, batch=3, generator=gen())
    assert len(params) == 2 and params[1].shape == (3, 3) and params[1].requires_grad
    np.testing.assert_allclose(image_f.mean_colour().detach().numpy(), np.tile(spectrum["mean"], (3, 1)), atol=1e-5)
    z = image_f.decorrelated().detach().numpy().astype(np.float64)
    np.testing.assert_allclose(z.mean(axis=(2, 3)), np.tile(spectrum["mean"], (3, 1)), atol=1e-5)
    with torch.no_grad():
        params[1].copy_(torch.tensor([[50.0, -50.0, 0.3], [-50.0, 50.0, -0.3], [0.0, 0.0, 0.0]]))
    logit = image_f.mean_logit().detach().numpy().astype(np.float64)
    centre, half = (low + high) / 2, (high - low) / 2
    np.testing.assert_allclose(logit[0], [high[0], low[1], centre[2] + half[2] * np.tanh(0.3)], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logit[1], [low[0], high[1], centre[2] - half[2] * np.tanh(0.3)], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logit[2], centre, rtol=1e-5, atol=1e-5)
    z = image_f.decorrelated().detach().numpy().astype(np.float64)
    np.testing.assert_allclose(np.einsum("ck,nk->nc", c, z.mean(axis=(2, 3))), logit, atol=1e-4)  # C (mean z)


def test_fixed_mean_is_the_photographs_average_on_every_image():
    spectrum = load_natural_spectrum()
    params, image_f = maco_image(8, batch=2, generator=gen(), fixed_mean=True)
    assert len(params) == 1
    z = image_f.decorrelated().detach().numpy().astype(np.float64)
    np.testing.assert_allclose(z.mean(axis=(2, 3)), np.tile(spectrum["mean"], (2, 1)), atol=1e-5)


def test_magnitude_is_fixed_to_the_bit_through_optimisation(tiny_model):
    holder = {}

    def param_f():
        params, image_f = maco_image(8, batch=2)
        holder["f"], holder["amplitude0"] = image_f, image_f.amplitude.clone()
        holder["phase0"], holder["colour0"] = params[0].detach().clone(), params[1].detach().clone()
        return params, image_f

    FeatureViz(tiny_model, "fc8:2").visualize(param_f, thresholds=[6], lr=0.1, transforms=maco_transforms(), views=2)
    image_f = holder["f"]
    assert torch.equal(image_f.amplitude, holder["amplitude0"])          # the constant itself, bit for bit
    assert not torch.equal(image_f.phase.detach(), holder["phase0"])    # the phase did move
    assert not torch.equal(image_f.colour.detach(), holder["colour0"])  # and the mean colour
    z = image_f.decorrelated().detach().numpy().astype(np.float64)
    measured = np.abs(np.fft.rfft2(z, norm="ortho"))
    expected = expected_spectrum(image_f, measured.shape)
    np.testing.assert_allclose(measured, expected, rtol=0, atol=2e-6 * expected.max())


def test_known_spectrum_gives_known_image():
    """One coefficient (k, l) = (1, 2) of amplitude a in channel 0: z0 = 2 a / sqrt(HW) cos(2 pi (ky/H + lx/W) + p),
    z1 = z2 = 0; image = sigmoid(C[:, 0] z0)."""
    h, w, a, p = 8, 10, 3.0, 0.7
    amplitude = np.zeros((3, h, w // 2 + 1))
    amplitude[0, 1, 2] = a
    params, image_f = maco_image(w, h, amplitude=amplitude, generator=gen())
    with torch.no_grad():
        params[0].zero_()
        params[0][0, 0, 1, 2] = p
        image = image_f()[0].numpy().astype(np.float64)
    y, x = np.mgrid[0:h, 0:w]
    z0 = 2 * a / math.sqrt(h * w) * np.cos(2 * np.pi * (y / h + 2 * x / w) + p)
    expected = sigmoid(COLOR_CORRELATION_NORMALIZED.astype(np.float64)[:, 0, None, None] * z0[None])
    np.testing.assert_allclose(image, expected, atol=1e-6)


def test_self_conjugate_columns_and_dc_sign():
    assert self_conjugate_columns(8) == [0, 4] and self_conjugate_columns(9) == [0]
    h, w = 6, 6
    amplitude = np.zeros((3, h, w // 2 + 1))
    amplitude[:, 0, 0] = [6.0, 12.0, 0.0]                  # DC only: z = +-a / sqrt(HW) everywhere
    _, image_f = maco_image(w, h, amplitude=amplitude, dc_sign=np.array([1.0, -1.0, 1.0]), generator=gen())
    z = image_f.decorrelated().detach().numpy()
    np.testing.assert_allclose(z[0, 0], np.full((h, w), 1.0), atol=1e-6)
    np.testing.assert_allclose(z[0, 1], np.full((h, w), -2.0), atol=1e-6)


def test_seeds_reproduce_and_differ(tiny_model):
    def run(seed):
        fv = FeatureViz(tiny_model, "fc8:1")
        return fv.visualize(lambda: maco_image(8, batch=2), thresholds=[4], seed=seed, lr=0.1,
                            transforms=maco_transforms(), views=2)[0]

    a, b, c = run(0), run(0), run(1)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_bad_amplitude_is_refused():
    with pytest.raises(ValueError, match="amplitude must be"):
        maco_image(8, amplitude=np.ones((3, 8, 4)))
    with pytest.raises(ValueError, match="amplitude must be"):
        maco_image(8, amplitude=-np.ones((3, 8, 5)))


# ------------------------------------------------------------------------------------------------ transparency
def test_transparency_accumulates_the_input_gradient_magnitude(tiny_model):
    """Without transforms, after one step the map is |d obj / d image| at the starting image, recomputed by hand
    from the same seed; transparency_map() is its channel sum over its 99th percentile, clipped."""
    from dvtoolbox.models.pixel_space import to_model_input

    holder = {}

    def param_f():
        params, image_f = maco_image(8, batch=1)
        holder["f"] = image_f
        return params, image_f

    FeatureViz(tiny_model, "fc8:3").visualize(param_f, thresholds=[1], lr=0.1, transforms=[], seed=3)
    _, fresh = maco_image(8, batch=1, generator=torch.Generator().manual_seed(3))
    start = fresh().detach().requires_grad_(True)
    (grad0,) = torch.autograd.grad(tiny_model(to_model_input(start, tiny_model.input_contract))[0, 3], start)
    accumulated = holder["f"].transparency
    torch.testing.assert_close(accumulated, grad0.abs(), rtol=1e-5, atol=1e-8)
    total = accumulated.sum(dim=1)[0].numpy().astype(np.float64)
    np.testing.assert_allclose(holder["f"].transparency_map()[0], np.clip(total / np.percentile(total, 99), 0, 1),
                               rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------------------------ spectrum
def test_shipped_spectrum_follows_a_power_law():
    spectrum = load_natural_spectrum()
    assert spectrum["reference_size"] == 224 and len(spectrum["sources"]) == 8
    assert np.all(spectrum["rgb_low"] < spectrum["rgb_mean"]) and np.all(spectrum["rgb_mean"] < spectrum["rgb_high"])
    rgb = lambda logit: 1 / (1 + np.exp(-logit))  # noqa: E731
    np.testing.assert_allclose(rgb(spectrum["logit_low"]), spectrum["rgb_low"], rtol=1e-5)
    np.testing.assert_allclose(rgb(spectrum["logit_high"]), spectrum["rgb_high"], rtol=1e-5)
    assert np.all(spectrum["rgb_low"] >= 0) and np.all(spectrum["rgb_high"] <= 1)
    amplitude, _ = natural_amplitude(224, 224)
    freqs, amps = radial_profile(amplitude, 224, 224)
    slope, _, r2 = power_law_fit(freqs, amps)
    assert -1.4 < slope < -0.9 and r2 > 0.99            # photographs: amplitude ~ 1 / f ** (1.0 .. 1.4)


def test_natural_amplitude_hits_the_grid_and_is_symmetric():
    spectrum = load_natural_spectrum()
    q = spectrum["quadrant"]
    amplitude, sign = natural_amplitude(224, 224)
    np.testing.assert_array_equal(amplitude[:, 5, 7], q[:, 5, 7])
    np.testing.assert_array_equal(amplitude[:, 224 - 5, 7], q[:, 5, 7])
    small, _ = natural_amplitude(8, 8)                  # 224 / 8 = 28: grid points 28 k
    np.testing.assert_array_equal(small[:, 3, 2], q[:, 84, 56])
    np.testing.assert_allclose(small[:, 0, 0], np.abs(spectrum["mean"]) * 8, rtol=1e-12)
    assert set(sign.tolist()) <= {-1.0, 1.0}
    np.testing.assert_array_equal(sample_quadrant(q, 224, 224, 224)[:, :113], q[:, :113, :113])


def test_average_spectrum_recovers_a_known_power_law():
    """Random-phase images whose decorrelated logit has amplitude 0.05 / f ** 1.5: the fitted slope is -1.5."""
    s = 64
    fy, fx = np.fft.fftfreq(s)[:, None], np.fft.rfftfreq(s)[None, :]
    f = np.maximum(np.sqrt(fy ** 2 + fx ** 2), 1.0 / s)
    rng = np.random.RandomState(0)
    images = []
    for _ in range(3):
        phase = rng.uniform(-np.pi, np.pi, (3, s, s // 2 + 1))
        z = np.fft.irfft2(0.05 / f ** 1.5 * np.exp(1j * phase), s=(s, s), norm="ortho")
        z = np.fft.irfft2(0.05 / f ** 1.5 * np.exp(1j * np.angle(np.fft.rfft2(z))), s=(s, s), norm="ortho")
        images.append(sigmoid(np.einsum("ck,khw->chw", COLOR_CORRELATION_NORMALIZED.astype(np.float64), z)))
    quadrant, mean, count = average_spectrum(images)
    assert count == 3
    amplitude = sample_quadrant(quadrant, s, s, s)
    slope, _, r2 = power_law_fit(*radial_profile(amplitude, s, s))
    assert slope == pytest.approx(-1.5, abs=0.02) and r2 > 0.999


def test_spectral_slope_of_a_known_grey_image():
    s = 64
    fy, fx = np.fft.fftfreq(s)[:, None], np.fft.rfftfreq(s)[None, :]
    f = np.maximum(np.sqrt(fy ** 2 + fx ** 2), 1.0 / s)
    phase = np.random.RandomState(1).uniform(-np.pi, np.pi, (s, s // 2 + 1))
    grey = np.fft.irfft2(f ** -1.2 * np.exp(1j * phase), s=(s, s), norm="ortho")
    grey = np.fft.irfft2(f ** -1.2 * np.exp(1j * np.angle(np.fft.rfft2(grey))), s=(s, s), norm="ortho")
    grey = 0.5 + 0.1 * grey / np.abs(grey).max()
    slope = spectral_slope(np.repeat(grey[None, :, :, None], 3, axis=3))
    assert slope[0] == pytest.approx(-1.2, abs=0.02)


# ------------------------------------------------------------------------------------------------ crops and noise
@pytest.mark.parametrize("cy, cx, side, size", [(0.5, 0.5, 1.0, (9, 11)), (0.3, 0.6, 0.5, (12, 12)),
                                                (0.0, 1.0, 0.7, (8, 10))])
def test_crop_resize_matches_scipy(cy, cx, side, size):
    x = np.random.RandomState(2).rand(2, 3, 9, 11)
    out = crop_resize(torch.tensor(x), cy, cx, side, size, fill=0.5).numpy()
    h, w = size
    H, W = x.shape[-2:]
    j, i = np.meshgrid(np.arange(w), np.arange(h))
    u = side * ((2 * j + 1) / w - 1) + 2 * cx - 1
    v = side * ((2 * i + 1) / h - 1) + 2 * cy - 1
    cols, rows = ((u + 1) * W - 1) / 2, ((v + 1) * H - 1) / 2
    for n in range(2):
        for c in range(3):
            ref = scipy.ndimage.map_coordinates(x[n, c] - 0.5, [rows, cols], order=1, mode="grid-constant",
                                                cval=0.0) + 0.5
            np.testing.assert_allclose(out[n, c], ref, atol=1e-10)


def test_box_crop_draws_from_the_generator_and_leaves_input():
    x = torch.rand(2, 3, 16, 16)
    before = x.clone()
    crop = random_box_crop((0.5, 0.8), centre_sd=0.15)
    a = crop(x, gen(5))
    g = gen(5)
    u = torch.rand(1, generator=g, dtype=torch.float64).item()
    cy, cx = (min(1.0, max(0.0, 0.5 + 0.15 * float(c))) for c in torch.randn(2, generator=g, dtype=torch.float64))
    torch.testing.assert_close(a, crop_resize(x, cy, cx, 0.5 + 0.3 * u, (16, 16)))
    assert torch.equal(x, before)


def test_pixel_noise_is_one_draw_for_the_batch():
    x = torch.zeros(3, 3, 5, 5)
    out = pixel_noise(0.1)(x, gen(7))
    g = gen(7)
    expected = 0.1 * torch.randn(1, 3, 5, 5, generator=g) + 0.1 * (torch.rand(1, 3, 5, 5, generator=g) - 0.5)
    torch.testing.assert_close(out, expected.expand(3, 3, 5, 5))


def test_crop_and_noise_errors():
    with pytest.raises(ValueError, match="box"):
        random_box_crop((0.9, 0.5))
    with pytest.raises(ValueError, match="noise"):
        pixel_noise(-1)
    with pytest.raises(ValueError, match="side"):
        crop_resize(torch.zeros(1, 3, 4, 4), 0.5, 0.5, 0.0, (4, 4))


# ------------------------------------------------------------------------------------------------ recipe, CLI
def test_cli_recipe_maco_is_the_library_recipe(tmp_path):
    from dvtoolbox.cli.visualize import main
    from dvtoolbox.io.images import load_image_rgb, to_uint8
    from dvtoolbox.models.registry import create_model
    from dvtoolbox.optvis.recipes import RECIPES

    assert main(["--model", "tiny_test", "--objective", "fc8:2", "--thresholds", "2,3", "--recipe", "maco",
                 "--output-dir", str(tmp_path), "-v"]) == 0
    r = RECIPES["maco"]
    assert (r.param, r.transforms, r.views) == ("maco", "maco", 4)
    holder = {}

    def param_f():
        params, holder["f"] = maco_image(8)
        return params, holder["f"]

    (image,) = FeatureViz(create_model("tiny_test"), "fc8:2").visualize(param_f, thresholds=[3], lr=r.lr,
                                                                        transforms=r.transform_list(), views=r.views)
    assert np.array_equal(load_image_rgb(str(tmp_path / "viz_step3_0.png")), to_uint8(image[0]))
    transparency = load_image_rgb(str(tmp_path / "viz_step3_0_transparency.png"))[:, :, 0]
    assert np.array_equal(transparency, to_uint8(holder["f"].transparency_map()[0]))
    assert not (tmp_path / "viz_step2_0_transparency.png").exists()


def test_maco_images_have_a_photographs_slope_and_mean_colour():
    """Random-phase MACO images at 224 (the start of every run, and what the fixed amplitude keeps): each image's
    spectral slope inside the range of photographs' (-1.65 .. -0.96 for the naturalness benchmark's 100 crops) and
    its mean colour inside the shipped crops' range on every channel, for the start and for the extreme mean
    colours the parameter can reach."""
    spectrum = load_natural_spectrum()
    params, image_f = maco_image(224, batch=4, generator=gen(3))
    with torch.no_grad():
        params[1][2:] = torch.tensor([[3.0, -3.0, 3.0], [-3.0, 3.0, -3.0]])   # two images near the range's corners
        images = image_f().permute(0, 2, 3, 1).numpy().astype(np.float64)
    slopes = spectral_slope(images)
    assert np.all((-1.65 < slopes) & (slopes < -0.96)), slopes
    colours = images.mean(axis=(1, 2))
    assert np.all(colours > spectrum["rgb_low"]) and np.all(colours < spectrum["rgb_high"]), colours
