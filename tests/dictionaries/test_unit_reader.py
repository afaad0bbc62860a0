"""A pushed latent read through one encoder column (``Dictionary.latents_at``, ``DictionaryTap.read_units``, used by
``optimize.push.UnitPush`` when the push layer is a dictionary's tap): its values against a numpy restatement of the
encode rule, and the push's gradient against a numpy one (a linear layer) and against autograd through the whole
dictionary (``Dictionary.pre_activation``) on conv and token layouts."""

import numpy as np
import pytest
import torch
from torch import nn

from dvtoolbox.dictionaries import Dictionary, LayerDictionary
from dvtoolbox.dictionaries.tap import attach_checked
from dvtoolbox.models.capture import resolve_layer
from dvtoolbox.models.layouts import canonical, model_layouts
from dvtoolbox.models.load import load_model
from dvtoolbox.optimize.push import UnitPush
from tests.conftest import make_tiny
from tests.dictionaries.test_encoder_product import D_IN, N_LATENTS, numpy_pre_activation, random_dictionary


@pytest.fixture(autouse=True)
def _one_thread(_seed_everything):
    torch.set_num_threads(1)


@pytest.mark.parametrize("normalisation,subtract_b_dec,rescale", [
    ("none", False, False), ("layer_norm", True, False), ("constant_norm_rescale", False, True)])
def test_latents_at_is_one_column_of_the_encode_rule(normalisation, subtract_b_dec, rescale):
    d = random_dictionary(normalisation, subtract_b_dec, rescale)
    x = torch.randn(5, D_IN, generator=torch.Generator().manual_seed(8))
    ks = torch.tensor([0, 9, 3, 3, 7])
    expected = numpy_pre_activation(d, x.numpy()[:, :, None, None])[np.arange(5), ks.numpy(), 0, 0]
    np.testing.assert_allclose(d.latents_at(x, ks).numpy(), expected, rtol=1e-5, atol=1e-5)


class OneByOne(nn.Module):
    """A 1x1 convolution of the image (3 -> D_IN channels): the layer the dictionary reads, linear in the image."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, D_IN, 1)
        self.head = nn.Linear(D_IN, 2)

    def forward(self, x):
        return self.head(self.conv(x).mean(dim=(2, 3)))


def test_gradient_of_a_linear_layer_is_the_encoder_column_through_the_convolution():
    """d(pre_k at (y, x)) / d(image) is conv.weight^T W_enc[:, k] at pixel (y, x) and 0 elsewhere (numpy)."""
    torch.manual_seed(1)
    model = OneByOne().eval()
    d = random_dictionary()
    attach_checked(model, {"sae": LayerDictionary("conv", d)}, (6, 6), {}, "size")
    units, dirs = [(2, 1, 4), (9, 5, 0), (2, 3, 3)], [1.0, -1.0, 1.0]
    x = torch.randn(3, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    acts, grad = UnitPush(model, "sae", units, dirs, torch.device("cpu"))(x)
    w = model.conv.weight.detach().double().numpy()[:, :, 0, 0]  # (D_IN, 3)
    expected = np.zeros((3, 3, 6, 6))
    for n, ((k, y, x_), s) in enumerate(zip(units, dirs)):
        expected[n, :, y, x_] = s * (w.T @ d.W_enc.double().numpy()[:, k])
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        layer = model.conv(x)
    np.testing.assert_allclose(acts.numpy(), numpy_pre_activation(d, layer.numpy()), rtol=1e-5, atol=1e-5)


def reference_push(model, layer, layout, d: Dictionary, x, units, dirs):
    """The gradient by autograd through every latent (``Dictionary.pre_activation`` on the captured layer)."""
    seen = {}
    handle = resolve_layer(model, layer).register_forward_hook(lambda m, i, o: seen.setdefault("out", o))
    x = x.clone().requires_grad_(True)
    try:
        model(x)
    finally:
        handle.remove()
    t = canonical(seen["out"], layout, layer)
    pre = d.pre_activation(t.movedim(1, -1))  # (N, H, W, n)
    value = sum(s * pre[n, y, x_, k] for n, ((k, y, x_), s) in enumerate(zip(units, dirs)))
    return torch.autograd.grad(value, x)[0]


@pytest.mark.parametrize("which", ["conv", "tokens"])
def test_gradient_equals_autograd_through_the_whole_dictionary(which):
    if which == "conv":
        model, layer, d_in, size = make_tiny(), "conv1", 4, (8, 8)
    else:
        model, layer, d_in, size = load_model("tests.models.user_models:vit32", weights=None), \
            "encoder.layers.encoder_layer_0", 16, (32, 32)
    g = torch.Generator().manual_seed(5)
    d = Dictionary(W_enc=torch.randn(d_in, N_LATENTS, generator=g), b_enc=torch.randn(N_LATENTS, generator=g),
                   b_dec=torch.randn(d_in, generator=g), subtract_b_dec=True, normalisation="layer_norm")
    layout = model_layouts(model, size)[layer]
    attach_checked(model, {"sae": LayerDictionary(layer, d)}, size, {}, "size")
    units, dirs = [(3, 1, 2), (0, 3, 0), (7, 2, 3)], [1.0, 1.0, -1.0]
    x = torch.randn(3, 3, *size, generator=g) * 50
    acts, grad = UnitPush(model, "sae", units, dirs, torch.device("cpu"))(x)
    expected = reference_push(model, layer, layout, d, x, units, dirs)
    assert grad.abs().max() > 0
    torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-6 * float(expected.abs().max()))
    assert acts.shape[:2] == (3, N_LATENTS)
