"""Image parameterisations against numpy: FFT, colour matrix, lowres / laplacian, and bit-for-bit seeding."""

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from dvtoolbox.optvis import param as P
from dvtoolbox.optvis.param import color

pytestmark = pytest.mark.filterwarnings("error")


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


# -------------------------------------------------------------------------------------------- fft


def test_rfft2d_freqs_values():
    freqs = P.rfft2d_freqs(3, 4)
    fy = np.array([0.0, 1 / 3, -1 / 3])[:, None]
    fx = np.array([0.0, 0.25, 0.5])[None, :]
    assert freqs.shape == (3, 3) == np.fft.rfft2(np.zeros((3, 4))).shape
    assert freqs == pytest.approx(np.sqrt(fy ** 2 + fx ** 2))
    assert P.rfft2d_freqs(4, 5).shape == np.fft.rfft2(np.zeros((4, 5))).shape == (4, 3)


def test_spectrum_scale():
    scale = P.spectrum_scale(4, 8, decay_power=1.5)
    freqs = P.rfft2d_freqs(4, 8)
    assert scale[0, 0] == pytest.approx(8 ** 1.5)           # DC: 1 / (1/8)^1.5
    assert scale[1, 2] == pytest.approx(freqs[1, 2] ** -1.5)
    assert np.all(P.spectrum_scale(4, 8, decay_power=0) == 1.0)


@pytest.mark.parametrize("h,w,decay", [(6, 8, 1.0), (5, 7, 1.0), (4, 9, 2.0)])
def test_fft_image_is_inverse_rfft2_of_the_scaled_spectrum(h, w, decay):
    params, raw_f = P.fft_image((2, 3, h, w), sd=0.5, decay_power=decay, generator=gen())
    (spectrum,) = params
    assert spectrum.shape == (2, 3, h, w // 2 + 1, 2) and spectrum.requires_grad
    s = spectrum.detach().numpy().astype(np.float64)
    complex_spectrum = (s[..., 0] + 1j * s[..., 1]) * P.spectrum_scale(h, w, decay)
    expected = np.fft.irfft2(complex_spectrum, s=(h, w), norm="ortho") / 4.0
    assert raw_f().detach().numpy() == pytest.approx(expected, abs=1e-5)


def test_fft_image_of_a_real_image_round_trips():
    # with decay_power 0 the map is orthonormal (times 1/4): the spectrum of 4 * image is the parameter
    h, w = 6, 8
    params, raw_f = P.fft_image((1, 1, h, w), decay_power=0, generator=gen())
    img = np.random.RandomState(0).randn(h, w)
    spec = np.fft.rfft2(img * 4.0, norm="ortho")
    with torch.no_grad():
        params[0].copy_(torch.from_numpy(np.stack([spec.real, spec.imag], -1)[None, None]).float())
    assert raw_f().detach().numpy()[0, 0] == pytest.approx(img, abs=1e-5)


# -------------------------------------------------------------------------------------------- colour


def test_color_matrix_properties():
    m = color.COLOR_CORRELATION_SVD_SQRT.astype(np.float64)
    gram = m.T @ m  # columns of U sqrt(S) are orthogonal (rounded to 2 decimals in lucid)
    assert np.abs(gram - np.diag(np.diag(gram))).max() < 1e-3
    assert np.all(np.diag(gram) > 0)
    norms = np.linalg.norm(color.COLOR_CORRELATION_NORMALIZED, axis=0)
    assert norms.max() == pytest.approx(1.0, abs=1e-7)
    assert color.COLOR_CORRELATION_NORMALIZED == pytest.approx(m / np.linalg.norm(m, axis=0).max(), abs=1e-7)
    corr = m @ m.T  # the colour correlation it is the square root of: symmetric, positive definite
    assert np.all(np.linalg.eigvalsh(corr) > 0)
    assert corr[0, 1] > 0 and corr[1, 2] > 0  # R, G, B positively correlated


def test_linear_decorrelate_color_matches_einsum():
    t = torch.from_numpy(np.random.RandomState(2).randn(2, 3, 4, 5).astype(np.float32))
    expected = np.einsum("ck,nkhw->nchw", color.COLOR_CORRELATION_NORMALIZED.astype(np.float64), t.numpy())
    assert P.linear_decorrelate_color(t).numpy() == pytest.approx(expected, abs=1e-6)
    f = P.to_valid_rgb(lambda: t, decorrelate=True)
    assert f().numpy() == pytest.approx(sigmoid(expected), abs=1e-6)
    assert P.to_valid_rgb(lambda: t)().numpy() == pytest.approx(sigmoid(t.numpy().astype(np.float64)), abs=1e-6)


# -------------------------------------------------------------------------------------------- get_image


def test_get_image_shapes_and_ranges():
    params, image_f = P.get_image(5, h=6, batch=2, generator=gen())
    img = image_f()
    assert img.shape == (2, 3, 6, 5) and img.dtype == torch.float32
    assert 0 < img.min() and img.max() < 1
    img.sum().backward()
    assert params[0].grad is not None


def test_get_image_pixel_is_sigmoid_of_decorrelated_parameter():
    params, image_f = P.get_image(4, fft=False, decorrelate=True, sd=1.0, generator=gen())
    raw = params[0].detach().numpy().astype(np.float64)
    expected = sigmoid(np.einsum("ck,nkhw->nchw", color.COLOR_CORRELATION_NORMALIZED.astype(np.float64), raw))
    assert image_f().detach().numpy() == pytest.approx(expected, abs=1e-6)


def test_get_image_alpha_channel():
    params, image_f = P.get_image(4, fft=False, decorrelate=False, alpha=True, sd=1.0, generator=gen())
    raw = params[0].detach().numpy().astype(np.float64)
    img = image_f().detach().numpy()
    assert img.shape == (1, 4, 4, 4)
    assert img == pytest.approx(sigmoid(raw), abs=1e-6)  # no colour matrix: every channel is sigmoid(raw)
    params, image_f = P.get_image(4, alpha=True, generator=gen())
    assert image_f().shape == (1, 4, 4, 4)


def test_image_sample():
    img = P.image_sample((2, 3, 8, 8), sd=0.5, generator=gen(4))
    assert img.shape == (2, 3, 8, 8) and not img.requires_grad
    assert 0 < img.min() and img.max() < 1 and img.std() > 0.05
    assert torch.equal(img, P.image_sample((2, 3, 8, 8), sd=0.5, generator=gen(4)))
    grey = P.image_sample((1, 3, 8, 8), generator=gen(4))  # sd 0.01: nearly uniform grey
    assert (grey - 0.5).abs().max() < 0.05
    with pytest.raises(ValueError, match=r"shape \(N, 3, H, W\)"):
        P.image_sample((1, 4, 8, 8))


# -------------------------------------------------------------------------------------------- lowres, pyramid


def test_lowres_tensor_matches_scipy_zoom():
    params, raw_f = P.lowres_tensor((1, 2, 12, 9), (1, 2, 4, 3), sd=1.0, generator=gen())
    low = params[0].detach().numpy().astype(np.float64)
    out = raw_f().detach().numpy()
    for c in range(2):
        expected = ndi.zoom(low[0, c], (3, 3), order=1, mode="nearest", grid_mode=True)
        assert out[0, c] == pytest.approx(expected, abs=1e-5)


def test_lowres_tensor_offset_is_symmetric_shift():
    params, plain_f = P.lowres_tensor((1, 1, 8, 8), (1, 1, 4, 4), sd=1.0, generator=gen(1))
    params2, shifted_f = P.lowres_tensor((1, 1, 8, 8), (1, 1, 4, 4), offset=True, sd=1.0, generator=gen(1))
    assert torch.equal(params[0], params2[0])
    plain = plain_f().detach().numpy()
    expected = np.pad(plain, ((0, 0), (0, 0), (1, 0), (1, 0)), mode="symmetric")[..., :8, :8]  # offset 8/4/2 = 1
    assert np.array_equal(shifted_f().detach().numpy(), expected)
    _, f = P.lowres_tensor((1, 1, 8, 8), (1, 1, 4, 4), offset=(3, 0), sd=1.0, generator=gen(1))
    expected = np.pad(plain, ((0, 0), (0, 0), (3, 0), (0, 0)), mode="symmetric")[..., :8, :]
    assert np.array_equal(f().detach().numpy(), expected)


def test_laplacian_pyramid_is_the_sum_of_resized_levels():
    params, raw_f = P.laplacian_pyramid((1, 3, 16, 12), n_levels=3, sd=1.0, generator=gen())
    assert [tuple(p.shape) for p in params] == [(1, 3, 16, 12), (1, 3, 8, 6), (1, 3, 4, 3)]
    expected = sum(P.resize_bilinear(p.detach(), (16, 12)) for p in params)
    assert torch.allclose(raw_f().detach(), expected, atol=1e-6)


# -------------------------------------------------------------------------------------------- seeding


def test_seeding_is_bit_for_bit_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    a = P.get_image(16, batch=2, generator=gen(3))[1]()
    b = P.get_image(16, batch=2, generator=gen(3))[1]()
    c = P.get_image(16, batch=2, generator=gen(4))[1]()
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), state)


def test_param_defaults_context():
    with P.param_defaults(generator=gen(3)):
        a = P.get_image(8)[1]()
        explicit = P.get_image(8, generator=gen(5))[1]()
    assert torch.equal(a, P.get_image(8, generator=gen(3))[1]())
    assert torch.equal(explicit, P.get_image(8, generator=gen(5))[1]())
    # outside the block: torch's global generator, as torch.randn
    torch.manual_seed(11)
    g1 = P.get_image(8)[1]()
    torch.manual_seed(11)
    assert torch.equal(g1, P.get_image(8)[1]())


def test_generator_device_mismatch_is_an_error():
    with pytest.raises(ValueError, match="generator lives on cpu but the tensors go to meta"):
        P.pixel_image((1, 3, 2, 2), generator=gen(), device="meta")


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"shape must be \(N, C, H, W\)"):
        P.pixel_image((3, 2, 2))
    with pytest.raises(ValueError, match="underlying_shape must keep N and C"):
        P.lowres_tensor((1, 3, 8, 8), (1, 1, 4, 4))
