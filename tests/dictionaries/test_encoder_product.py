"""The tap's channels-first encoder (``tap.channels_first_pre_activation``, ``tap.EncoderProduct``): its values and
its gradient (the CPU's backward multiplies only the latents that receive a gradient) against numpy restatements."""

import numpy as np
import pytest
import torch

from dvtoolbox.dictionaries.dictionary import Dictionary
from dvtoolbox.dictionaries.tap import EncoderProduct, channels_first_pre_activation

D_IN, N_LATENTS = 6, 10


def random_dictionary(normalisation="none", subtract_b_dec=False, rescale=False) -> Dictionary:
    g = torch.Generator().manual_seed(3)
    return Dictionary(W_enc=torch.randn(D_IN, N_LATENTS, generator=g), b_enc=torch.randn(N_LATENTS, generator=g),
                      W_dec=torch.randn(N_LATENTS, D_IN, generator=g), b_dec=torch.randn(D_IN, generator=g),
                      subtract_b_dec=subtract_b_dec, normalisation=normalisation, rescale_by_decoder_norm=rescale)


def numpy_pre_activation(d: Dictionary, t: np.ndarray) -> np.ndarray:
    """(N, d_in, H, W) -> (N, n, H, W), SAELens' rule restated in float64."""
    x = np.moveaxis(t.astype(np.float64), 1, -1)
    if d.normalisation == "constant_norm_rescale":
        x = x * np.sqrt(D_IN) / np.linalg.norm(x, axis=-1, keepdims=True)
    elif d.normalisation == "layer_norm":
        x = x - x.mean(axis=-1, keepdims=True)
        x = x / (x.std(axis=-1, ddof=1, keepdims=True) + 1e-5)
    if d.subtract_b_dec:
        x = x - d.b_dec.double().numpy()
    pre = x @ d.W_enc.double().numpy() + d.b_enc.double().numpy()
    if d.rescale_by_decoder_norm:
        pre = pre * np.linalg.norm(d.W_dec.double().numpy(), axis=-1)
    return np.moveaxis(pre, -1, 1)


@pytest.mark.parametrize("normalisation,subtract_b_dec,rescale", [
    ("none", False, False), ("none", True, False), ("layer_norm", True, False),
    ("constant_norm_rescale", False, True)])
def test_values_equal_the_encode_rule(normalisation, subtract_b_dec, rescale):
    d = random_dictionary(normalisation, subtract_b_dec, rescale)
    t = torch.randn(3, D_IN, 4, 5, generator=torch.Generator().manual_seed(4))
    got = channels_first_pre_activation(d, t)
    assert got.shape == (3, N_LATENTS, 4, 5) and got.is_contiguous()
    np.testing.assert_allclose(got.numpy(), numpy_pre_activation(d, t.numpy()), rtol=1e-5, atol=1e-5)


def test_nc_layer():
    d = random_dictionary()
    t = torch.randn(3, D_IN, generator=torch.Generator().manual_seed(5))
    got = channels_first_pre_activation(d, t)
    assert got.shape == (3, N_LATENTS)
    np.testing.assert_allclose(got.numpy(), t.double().numpy() @ d.W_enc.double().numpy() + d.b_enc.numpy(),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("latents", [[2], [0, 7, 7], list(range(N_LATENTS)), []])
def test_backward_equals_the_dense_product(latents):
    """The gradient to x of a weighted sum of some latents at some positions: W_enc @ grad, as numpy has it,
    whichever latents (none, some, repeated, all) receive it."""
    g = torch.Generator().manual_seed(6)
    w = torch.randn(D_IN, N_LATENTS, generator=g)
    x = torch.randn(2, D_IN, 7, generator=g).requires_grad_(True)
    weights = torch.zeros(2, N_LATENTS, 7)
    for i, k in enumerate(latents):
        weights[i % 2, k, (3 * i) % 7] += 1.0 + i
    out = EncoderProduct.apply(x, w)
    (grad,) = torch.autograd.grad((out * weights).sum(), x)
    expected = np.einsum("dk,nkp->ndp", w.double().numpy(), weights.double().numpy())
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out.detach().numpy(), np.einsum("dk,ndp->nkp", w.numpy(), x.detach().numpy()),
                               rtol=1e-5, atol=1e-5)


def test_backward_keeps_a_nan_gradient():
    w = torch.ones(D_IN, N_LATENTS)
    x = torch.zeros(1, D_IN, 2).requires_grad_(True)
    out = EncoderProduct.apply(x, w)
    (grad,) = torch.autograd.grad(out[0, 4, 1] * float("nan"), x)
    assert torch.isnan(grad[0, :, 1]).all() and (grad[0, :, 0] == 0).all()


def test_gradient_to_the_encoder_matrix():
    g = torch.Generator().manual_seed(8)
    w = torch.randn(D_IN, N_LATENTS, generator=g).requires_grad_(True)
    x = torch.randn(2, D_IN, 3, generator=g)
    weights = torch.randn(2, N_LATENTS, 3, generator=g)
    (grad_w,) = torch.autograd.grad((EncoderProduct.apply(x, w) * weights).sum(), w)
    np.testing.assert_allclose(grad_w.numpy(), np.einsum("ndp,nkp->dk", x.numpy(), weights.numpy()),
                               rtol=1e-5, atol=1e-5)


def test_the_compiled_engine_runs_latents_as_eager(tmp_path):
    """The compiled engine traces the tap on fake tensors (where the CPU's column picking cannot be lowered: the
    dense backward is traced instead): the same best obj per latent as eager."""
    from tests.dictionaries.test_dictionary_units import load, run
    torch.set_num_threads(1)
    best = {}
    for engine in ("eager", "compiled"):
        assert run(tmp_path / engine / "opt", "--push-channel", "0:3", "--batch-size", "3", "--engine", engine) == 0
        best[engine] = [float(load(tmp_path / engine / "opt", k).best_obj) for k in range(3)]
    np.testing.assert_allclose(best["compiled"], best["eager"], rtol=1e-5)


def test_the_bias_is_added_by_the_product_with_its_gradient():
    """W_enc^T x + b_enc in one product: the numpy sum, bit for bit the same as the product then the bias, and the
    bias's gradient the sum of the incoming one over batch and positions."""
    g = torch.Generator().manual_seed(9)
    w, b = torch.randn(D_IN, N_LATENTS, generator=g), torch.randn(N_LATENTS, generator=g).requires_grad_(True)
    x = torch.randn(2, D_IN, 3, generator=g)
    out = EncoderProduct.apply(x, w, b)
    assert torch.equal(out, EncoderProduct.apply(x, w) + b.detach()[:, None])
    np.testing.assert_allclose(out.detach().numpy(), np.einsum("dk,ndp->nkp", w.numpy(), x.numpy())
                               + b.detach().numpy()[:, None], rtol=1e-5, atol=1e-5)
    weights = torch.randn(2, N_LATENTS, 3, generator=g)
    (grad_b,) = torch.autograd.grad((out * weights).sum(), b)
    np.testing.assert_allclose(grad_b.numpy(), weights.numpy().sum(axis=(0, 2)), rtol=1e-5, atol=1e-6)
