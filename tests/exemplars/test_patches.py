"""Deconv and backprop against a numpy restatement on a tiny ReLU net; the image rules of save_caffe_image."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dvtoolbox.errors import UsageError
from dvtoolbox.exemplars.patches import caffe_image01, channel_norm, crop, norm01c, unit_input_gradient
from dvtoolbox.exemplars.receptive_field import CropBox, Region
from dvtoolbox.io.images import load_image_rgb


def fixed_weights():
    rng = np.random.default_rng(7)
    return {"w1": rng.normal(size=(4, 3, 3, 3)), "b1": rng.normal(size=4) * 0.1,
            "w2": rng.normal(size=(5, 4 * 4 * 4)), "b2": rng.normal(size=5) * 0.1}


class TinyReLUNet(nn.Module):
    """conv 3x3 pad 1 (3 -> 4), ReLU (functional, to check F.relu is replaced too), max-pool 2x2, fc (64 -> 5)."""

    def __init__(self, weights, functional_relu=False):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(64, 5)
        self.functional_relu = functional_relu
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor(weights["w1"]))
            self.conv.bias.copy_(torch.tensor(weights["b1"]))
            self.fc.weight.copy_(torch.tensor(weights["w2"]))
            self.fc.bias.copy_(torch.tensor(weights["b2"]))

    def forward(self, x):
        h = self.conv(x)
        h = F.relu(h) if self.functional_relu else self.relu(h)
        return self.fc(self.pool(h).flatten(1))


# ----------------------------------------------------------------------------------------- the numpy restatement


def np_conv(x, w, b):
    """x (3, 8, 8), w (4, 3, 3, 3), pad 1 -> (4, 8, 8)."""
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    out = np.zeros((w.shape[0], 8, 8))
    for o in range(w.shape[0]):
        for y in range(8):
            for x_ in range(8):
                out[o, y, x_] = (xp[:, y:y + 3, x_:x_ + 3] * w[o]).sum() + b[o]
    return out


def np_conv_backward(g, w):
    """d/dx of sum(g * conv(x)): g (4, 8, 8) -> (3, 8, 8)."""
    gx = np.zeros((3, 10, 10))
    for o in range(w.shape[0]):
        for y in range(8):
            for x_ in range(8):
                gx[:, y:y + 3, x_:x_ + 3] += w[o] * g[o, y, x_]
    return gx[:, 1:9, 1:9]


def np_pool_switches(h):
    """(pooled (4, 4, 4), switches: a (4, 8, 8) one-hot of each 2x2 window's maximum)."""
    pooled, switch = np.zeros((4, 4, 4)), np.zeros_like(h)
    for c in range(4):
        for y in range(4):
            for x_ in range(4):
                win = h[c, 2 * y:2 * y + 2, 2 * x_:2 * x_ + 2]
                dy, dx = np.unravel_index(win.argmax(), (2, 2))
                pooled[c, y, x_] = win[dy, dx]
                switch[c, 2 * y + dy, 2 * x_ + dx] = 1
    return pooled, switch


def np_gradient(x, wts, unit, deconv):
    """The input gradient of a unit of "fc" (channel) or of "relu" ((c, y, x)), backprop or deconv."""
    pre = np_conv(x, wts["w1"], wts["b1"])
    _pooled, switch = np_pool_switches(np.maximum(pre, 0))
    layer, idx = unit
    if layer == "fc":
        g_pool = wts["w2"][idx].reshape(4, 4, 4)
        g_relu_out = np.repeat(np.repeat(g_pool, 2, 1), 2, 2) * switch
    else:
        g_relu_out = np.zeros((4, 8, 8))
        g_relu_out[idx] = 1.0
    g_pre = np.maximum(g_relu_out, 0) if deconv else g_relu_out * (pre > 0)
    return np_conv_backward(g_pre, wts["w1"])


UNITS = [("fc", (2, 0, 0)), ("fc", (4, 0, 0)), ("relu", (0, 1, 4)), ("relu", (1, 3, 5))]
CASES = [(layer, unit, deconv, functional) for layer, unit in UNITS for deconv in (False, True)
         for functional in ((False, True) if layer == "fc" else (False,))]   # a functional ReLU has no name


@pytest.mark.parametrize("layer,unit,deconv,functional_relu", CASES)
def test_gradients_equal_the_numpy_restatement(layer, unit, deconv, functional_relu):
    wts = fixed_weights()
    net = TinyReLUNet(wts, functional_relu).eval()
    x = np.random.default_rng(1).normal(size=(3, 8, 8))
    got, value = unit_input_gradient(net, torch.tensor(x[None], dtype=torch.float32), layer, unit, deconv=deconv)
    expected = np_gradient(x, wts, (layer, unit[0] if layer == "fc" else unit), deconv)
    assert got.shape == (3, 8, 8) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    inactive = layer == "relu" and unit == (1, 3, 5) and not deconv   # pre-activation < 0: backprop is 0
    assert (np.abs(expected).max() > 0) != inactive


def test_deconv_differs_from_backprop():
    """A test that could not fail otherwise: the two passes differ on this net and input."""
    net = TinyReLUNet(fixed_weights()).eval()
    x = torch.tensor(np.random.default_rng(1).normal(size=(1, 3, 8, 8)), dtype=torch.float32)
    a, _ = unit_input_gradient(net, x, "fc", (2, 0, 0), deconv=True)
    b, _ = unit_input_gradient(net, x, "fc", (2, 0, 0), deconv=False)
    assert np.abs(a - b).max() > 1e-3


def test_a_net_without_relus_is_refused():
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Tanh(), nn.Conv2d(2, 2, 1)).eval()
    with pytest.raises(UsageError, match="deconv needs ReLUs") as info:
        unit_input_gradient(net, torch.zeros(1, 3, 6, 6), "2", (0, 1, 1), deconv=True)
    assert "\n" not in str(info.value)
    grad, _ = unit_input_gradient(net, torch.zeros(1, 3, 6, 6), "2", (0, 1, 1), deconv=False)  # backprop works
    assert grad.shape == (3, 6, 6)


def test_crop_pads_with_zeros_where_the_field_leaves_the_image():
    arr = np.arange(2 * 5 * 6, dtype=np.float32).reshape(2, 5, 6) + 1
    box = CropBox(Region(0, 3, 4, 6), Region(1, 4, 0, 2), (4, 4))
    out = crop(arr, box)
    expected = np.zeros((2, 4, 4), np.float32)
    expected[:, 1:4, 0:2] = arr[:, 0:3, 4:6]
    np.testing.assert_array_equal(out, expected)


def test_image_rules_of_save_caffe_image():
    arr = np.array([[[1.0, -3.0]], [[0.0, 2.0]], [[4.0, 0.5]]])      # (3, 1, 2), BGR
    img = caffe_image01(arr, (2, 1, 0), autoscale=False, autoscale_center=0)
    scale = max(2 * 4.0, -2 * -3.0) + 1e-10
    np.testing.assert_allclose(img[0, 0], np.array([4.0, 0.0, 1.0]) / scale + 0.5)   # RGB of pixel 0
    np.testing.assert_allclose(img[0, 1], np.array([0.5, 2.0, -3.0]) / scale + 0.5)
    norm = channel_norm(arr)
    np.testing.assert_allclose(norm, np.sqrt((arr ** 2).sum(0)))
    grey = caffe_image01(norm, (0, 1, 2))
    np.testing.assert_allclose(grey[..., 0], (norm - norm.min()) / (norm.max() - norm.min() + 1e-10))
    assert np.all(grey[..., 0] == grey[..., 2])
    np.testing.assert_allclose(norm01c(np.array([-1.0, 0.0, 0.5]), 0), [0.0, 0.5, 0.75], atol=1e-9)


def test_saved_file_holds_the_scaled_image(tmp_path):
    from dvtoolbox.exemplars.patches import save_centred
    arr = np.zeros((3, 2, 2), np.float32)
    arr[2, 0, 0] = 1.0   # BGR: red at (0, 0)
    save_centred(str(tmp_path / "a.png"), arr, (2, 1, 0))
    rgb = load_image_rgb(str(tmp_path / "a.png"))
    assert tuple(rgb[0, 0]) == (255, 128, 128) and tuple(rgb[1, 1]) == (128, 128, 128)
