"""Each supported layer type, built from a small prototxt (and caffemodel), against a numpy transcription of
Caffe's CPU code in float64. Covers what the real-Caffe tiny net does not: rectangular, clipped and heavily padded
pooling, global MAX pooling, WITHIN_CHANNEL LRN, kernel_h/pad_h/stride_h/dilation/group convolution, Eltwise
PROD/MAX and coefficients, leaky ReLU, Sigmoid, TanH, Flatten, Reshape, BatchNorm + Scale, Split, phase rules."""

import math

import numpy as np
import pytest
import torch

from dvtoolbox.models.capture import LayerCapture
from dvtoolbox.models.caffe import load_caffe_model
from dvtoolbox.models.caffe.layers import CaffeLRN, CaffePooling, StridedInputConv2d, sparse_rows_matmul

from .helpers import write_net


def run(model, x, names):
    with torch.no_grad(), LayerCapture(model, names) as cap:
        model(torch.as_tensor(x, dtype=torch.float32))
    return {n: cap.outputs[n].numpy().astype(np.float64) for n in names}


def image(shape, seed=0, scale=50.0):
    return (np.random.RandomState(seed).randn(*shape) * scale).astype(np.float32)


def assert_close(mine, ref, rel=1e-5):
    assert mine.shape == ref.shape
    assert np.abs(mine - ref).max() <= rel * max(np.abs(ref).max(), 1e-30)


# ---------------------------------------------------------------------------------------------- numpy references


def pool_ref(x, method, kernel, stride, pad):
    """Caffe's PoolingLayer::Forward_cpu (MAX and AVE) with its output-size rule."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, pad
    oh = int(math.ceil((h + 2 * ph - kh) / sh)) + 1
    ow = int(math.ceil((w + 2 * pw - kw) / sw)) + 1
    if ph or pw:
        oh -= (oh - 1) * sh >= h + ph
        ow -= (ow - 1) * sw >= w + pw
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * sh - ph, j * sw - pw
            if method == "MAX":
                he, we = min(hs + kh, h), min(ws + kw, w)
                hs, ws = max(hs, 0), max(ws, 0)
                out[:, :, i, j] = x[:, :, hs:he, ws:we].max(axis=(2, 3))
            else:
                he, we = min(hs + kh, h + ph), min(ws + kw, w + pw)
                size = (he - hs) * (we - ws)
                hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
                out[:, :, i, j] = x[:, :, hs:he, ws:we].sum(axis=(2, 3)) / size
    return out


def lrn_ref(x, size, alpha, beta, k, region):
    x = x.astype(np.float64)
    n, c, h, w = x.shape
    pre = (size - 1) // 2
    if region == "ACROSS_CHANNELS":
        padded = np.zeros((n, c + size - 1, h, w))
        padded[:, pre:pre + c] = x ** 2
        scale = k + alpha / size * np.stack([padded[:, i:i + size].sum(1) for i in range(c)], 1)
    else:  # Caffe: split, square, AVE pool (size, pad pre, stride 1), power(shift 1, scale alpha, power -beta), product
        scale = 1.0 + alpha * pool_ref(x ** 2, "AVE", (size, size), (1, 1), (pre, pre))
    return x * scale ** -beta


def conv_ref(x, weight, bias, stride, pad, dilation, group):
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, pad, dilation
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh = (h + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    ow = (w + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    out = np.zeros((n, o, oh, ow))
    per_group = o // group
    for oc in range(o):
        g = oc // per_group
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, g * cg:(g + 1) * cg, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                           j * dw:j * dw + sw * (ow - 1) + 1:sw]
                out[:, oc] += np.einsum("nchw,c->nhw", patch, weight[oc, :, i, j])
    if bias is not None:
        out += bias[None, :, None, None]
    return out


# ---------------------------------------------------------------------------------------------- pooling

POOL_CASES = [
    # (H, W, kernel, stride, pad): what each exercises
    (16, 16, (3, 3), (2, 2), (0, 0)),  # ceil rounding: 8, floor would give 7
    (8, 8, (3, 3), (2, 2), (1, 1)),  # padded, ceil: 5
    (7, 9, (3, 2), (2, 1), (1, 0)),  # rectangular kernel/stride/pad
    (5, 5, (2, 2), (2, 2), (1, 1)),  # the padded last window is dropped: 3, not 4
    (9, 9, (3, 3), (2, 2), (2, 2)),  # pad > kernel / 2 (Caffe allows pad < kernel): explicit-padding path
    (10, 7, (4, 4), (3, 3), (3, 1)),  # the same, rectangular
    (13, 13, (3, 3), (3, 3), (0, 0)),  # stride = kernel
]


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("h,w,kernel,stride,pad", POOL_CASES)
def test_pooling_equals_caffe(tmp_path, method, h, w, kernel, stride, pad):
    body = f"""layer {{ name: "pool" type: "Pooling" bottom: "data" top: "pool"
      pooling_param {{ pool: {method} kernel_h: {kernel[0]} kernel_w: {kernel[1]} stride_h: {stride[0]}
                       stride_w: {stride[1]} pad_h: {pad[0]} pad_w: {pad[1]} }} }}"""
    model = load_caffe_model(write_net(tmp_path, body, (2, 3, h, w))[0], None)
    x = image((2, 3, h, w))
    assert_close(run(model, x, ["pool"])["pool"], pool_ref(x, method, kernel, stride, pad))


@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_pooling_explicit_padding_path_equals_native_path(method):
    """The two implementations inside CaffePooling agree where both apply."""
    module = CaffePooling(method, (3, 3), (2, 2), (1, 1))
    x = torch.from_numpy(image((1, 2, 8, 8)))
    native = module(x)
    plan = module._plans[(8, 8)]
    assert plan[0]  # this case runs natively ...
    module._plans[(8, 8)] = (False,) + plan[1:]  # ... force the explicit-padding path
    np.testing.assert_allclose(module(x).numpy(), native.numpy(), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_global_pooling(tmp_path, method):
    body = f'layer {{ name: "g" type: "Pooling" bottom: "data" top: "g" pooling_param {{ pool: {method} ' \
           f'global_pooling: true }} }}'
    model = load_caffe_model(write_net(tmp_path, body, (1, 3, 5, 7))[0], None)
    x = image((1, 3, 5, 7))
    assert_close(run(model, x, ["g"])["g"], pool_ref(x, method, (5, 7), (1, 1), (0, 0)))


def test_v1_short_kernel_and_stride_fields(tmp_path):
    body = 'layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: AVE kernel_size: 3 ' \
           'stride: 2 pad: 1 } }'
    model = load_caffe_model(write_net(tmp_path, body, (1, 3, 8, 8))[0], None)
    x = image((1, 3, 8, 8))
    assert_close(run(model, x, ["p"])["p"], pool_ref(x, "AVE", (3, 3), (2, 2), (1, 1)))


# ---------------------------------------------------------------------------------------------- LRN


@pytest.mark.parametrize("region", ["ACROSS_CHANNELS", "WITHIN_CHANNEL"])
@pytest.mark.parametrize("size,alpha,beta,k", [(5, 1e-3, 0.75, 1.0), (3, 2e-3, 0.5, 2.0), (1, 1e-2, 0.75, 1.5)])
def test_lrn_equals_caffe(tmp_path, region, size, alpha, beta, k):
    body = f"""layer {{ name: "n" type: "LRN" bottom: "data" top: "n"
      lrn_param {{ local_size: {size} alpha: {alpha} beta: {beta} k: {k} norm_region: {region} }} }}"""
    model = load_caffe_model(write_net(tmp_path, body, (2, 3, 6, 5))[0], None)
    x = image((2, 3, 6, 5))
    assert_close(run(model, x, ["n"])["n"], lrn_ref(x, size, alpha, beta, k, region))


# ---------------------------------------------------------------------------------------------- convolution

CONV_CASES = [
    # (convolution_param text, weight shape, stride, pad, dilation, group, bias)
    ("num_output: 4 kernel_size: 3", (4, 3, 3, 3), (1, 1), (0, 0), (1, 1), 1, True),
    ("num_output: 4 kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 2", (4, 3, 3, 2), (2, 1), (1, 2),
     (1, 1), 1, True),
    ("num_output: 6 kernel_size: 3 kernel_size: 1 stride: 1 stride: 2 pad: 2 pad: 0", (6, 3, 3, 1), (1, 2), (2, 0),
     (1, 1), 1, True),
    ("num_output: 4 kernel_size: 3 dilation: 2 pad: 2 bias_term: false", (4, 3, 3, 3), (1, 1), (2, 2), (2, 2), 1,
     False),
    ("num_output: 6 kernel_size: 3 group: 3 pad: 1 stride: 2", (6, 1, 3, 3), (2, 2), (1, 1), (1, 1), 3, True),
]


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("param,wshape,stride,pad,dilation,group,bias", CONV_CASES)
def test_convolution_equals_caffe(tmp_path, legacy, param, wshape, stride, pad, dilation, group, bias):
    rng = np.random.RandomState(1)
    weight = rng.randn(*wshape).astype(np.float32) * 0.2
    b = rng.randn(wshape[0]).astype(np.float32) if bias else None
    body = f'layer {{ name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param {{ {param} }} }}'
    proto, weights = write_net(tmp_path, body, (1, 3, 9, 8), {"c": [weight] + ([b] if bias else [])}, legacy)
    model = load_caffe_model(proto, weights)
    x = image((1, 3, 9, 8))
    assert_close(run(model, x, ["c"])["c"], conv_ref(x, weight, b, stride, pad, dilation, group))


# ---------------------------------------------------------------------------------------------- elementwise and more


def test_neuron_eltwise_concat_split_softmax(tmp_path):
    body = """
    layer { name: "split" type: "Split" bottom: "data" top: "a" top: "b" }
    layer { name: "tanh" type: "TanH" bottom: "a" top: "t" }
    layer { name: "sig" type: "Sigmoid" bottom: "b" top: "s" }
    layer { name: "leaky" type: "ReLU" bottom: "data" top: "leaky" relu_param { negative_slope: 0.1 } }
    layer { name: "sum" type: "Eltwise" bottom: "t" bottom: "s" bottom: "leaky" top: "sum"
            eltwise_param { operation: SUM coeff: 2 coeff: -0.5 coeff: 0.25 } }
    layer { name: "plain" type: "Eltwise" bottom: "t" bottom: "s" top: "plain" }
    layer { name: "prod" type: "Eltwise" bottom: "t" bottom: "s" bottom: "leaky" top: "prod"
            eltwise_param { operation: PROD } }
    layer { name: "max" type: "Eltwise" bottom: "t" bottom: "s" top: "max" eltwise_param { operation: MAX } }
    layer { name: "cat" type: "Concat" bottom: "sum" bottom: "prod" bottom: "max" top: "cat" concat_param { axis: 1 } }
    layer { name: "cat3" type: "Concat" bottom: "sum" bottom: "prod" top: "cat3" concat_param { axis: 3 } }
    layer { name: "prob" type: "Softmax" bottom: "cat" top: "prob" }
    """
    model = load_caffe_model(write_net(tmp_path, body, (1, 3, 4, 5))[0], None)
    x = image((1, 3, 4, 5), scale=2.0).astype(np.float64)
    got = run(model, x, ["a", "b", "t", "s", "leaky", "sum", "plain", "prod", "max", "cat", "cat3", "prob"])
    t, s = np.tanh(x), 1 / (1 + np.exp(-x))
    leaky = np.where(x > 0, x, 0.1 * x)
    expected = {"a": x, "b": x, "t": t, "s": s, "leaky": leaky, "sum": 2 * t - 0.5 * s + 0.25 * leaky,
                "plain": t + s, "prod": t * s * leaky, "max": np.maximum(t, s)}
    expected["cat"] = np.concatenate([expected["sum"], expected["prod"], expected["max"]], 1)
    expected["cat3"] = np.concatenate([expected["sum"], expected["prod"]], 3)
    e = np.exp(expected["cat"] - expected["cat"].max(1, keepdims=True))
    expected["prob"] = e / e.sum(1, keepdims=True)
    for name, value in expected.items():
        assert_close(got[name], value, 1e-5)


def test_flatten_reshape_inner_product(tmp_path):
    rng = np.random.RandomState(2)
    w1, b1 = rng.randn(5, 72).astype(np.float32), rng.randn(5).astype(np.float32)
    w2 = rng.randn(3, 6).astype(np.float32)
    body = """
    layer { name: "flat" type: "Flatten" bottom: "data" top: "flat" }
    layer { name: "flat23" type: "Flatten" bottom: "data" top: "flat23" flatten_param { axis: 2 end_axis: 3 } }
    layer { name: "re" type: "Reshape" bottom: "data" top: "re"
            reshape_param { shape { dim: 0 dim: -1 dim: 2 dim: 6 } } }
    layer { name: "re1" type: "Reshape" bottom: "data" top: "re1"
            reshape_param { shape { dim: 2 dim: 2 } axis: 2 num_axes: 1 } }
    layer { name: "ip" type: "InnerProduct" bottom: "re" top: "ip" inner_product_param { num_output: 5 } }
    layer { name: "ipt" type: "InnerProduct" bottom: "re" top: "ipt"
            inner_product_param { num_output: 3 axis: 3 bias_term: false transpose: true } }
    """
    proto, weights = write_net(tmp_path, body, (1, 3, 4, 6), {"ip": [w1, b1], "ipt": [w2.T.copy()]})
    model = load_caffe_model(proto, weights)
    x = image((1, 3, 4, 6)).astype(np.float64)
    got = run(model, x, ["flat", "flat23", "re", "re1", "ip", "ipt"])
    assert_close(got["flat"], x.reshape(1, 72))
    assert_close(got["flat23"], x.reshape(1, 3, 24))
    assert_close(got["re"], x.reshape(1, 6, 2, 6))
    assert_close(got["re1"], x.reshape(1, 3, 2, 2, 6))
    assert_close(got["ip"], x.reshape(1, 72) @ w1.T + b1)
    assert_close(got["ipt"], x.reshape(1, 6, 2, 6) @ w2.T)
    assert model.blob_shapes["ipt"] == (6, 2, 3)


@pytest.mark.parametrize("factor", [2.0, 0.0])
def test_batch_norm_and_scale(tmp_path, factor):
    rng = np.random.RandomState(3)
    mean, var = rng.randn(3).astype(np.float32), rng.rand(3).astype(np.float32) + 0.5
    gamma, beta = rng.randn(3).astype(np.float32), rng.randn(3).astype(np.float32)
    body = """
    layer { name: "bn" type: "BatchNorm" bottom: "data" top: "data" batch_norm_param { eps: 0.001 } }
    layer { name: "sc" type: "Scale" bottom: "data" top: "data" scale_param { bias_term: true } }
    layer { name: "g" type: "Pooling" bottom: "data" top: "g" pooling_param { pool: AVE global_pooling: true } }
    layer { name: "gf" type: "Flatten" bottom: "g" top: "gf" }
    layer { name: "sc2" type: "Scale" bottom: "data" bottom: "gf" top: "sc2" scale_param { axis: 0 } }
    """
    blobs = {"bn": [mean, var, np.array([factor], np.float32)], "sc": [gamma, beta]}
    proto, weights = write_net(tmp_path, body, (1, 3, 4, 4), blobs)
    model = load_caffe_model(proto, weights)
    x = image((1, 3, 4, 4), scale=3.0).astype(np.float64)
    got = run(model, x, ["data@bn", "data@sc", "data", "sc2"])
    f = 0.0 if factor == 0 else 1.0 / factor
    normed = (x - (mean * f)[:, None, None]) / np.sqrt((var * f)[:, None, None] + 1e-3)
    scaled = normed * gamma[:, None, None] + beta[:, None, None]
    assert_close(got["data@bn"], normed)
    assert_close(got["data"], scaled)
    assert_close(got["sc2"], scaled * scaled.mean((2, 3), keepdims=True))
    assert model.gradient_sources == {"data": "data@input"}


def test_phase_rules_and_dotted_names(tmp_path):
    body = """
    layer { name: "train.only" type: "ReLU" bottom: "data" top: "r" include { phase: TRAIN } }
    layer { name: "not.test" type: "TanH" bottom: "data" top: "r" exclude { phase: TEST } }
    layer { name: "test.only" type: "Sigmoid" bottom: "data" top: "r.1" include { phase: TEST } }
    """
    model = load_caffe_model(write_net(tmp_path, body, (1, 3, 2, 2))[0], None)
    assert model.blob_taps == ("data", "r_1")
    assert list(model.layers) == ["test_only"]
    x = image((1, 3, 2, 2), scale=1.0).astype(np.float64)
    assert_close(run(model, x, ["r_1"])["r_1"], 1 / (1 + np.exp(-x)))


@pytest.mark.parametrize("h,w,kernel,stride,pad", [(227, 227, 11, 4, 0), (32, 32, 5, 2, 2), (30, 27, (7, 3), 2, (3, 1)),
                                                   (17, 17, 3, 3, 0), (9, 10, 2, 2, 1)])
def test_strided_input_conv_equals_plain_conv(h, w, kernel, stride, pad):
    """Same forward values as nn.Conv2d, and the same gradients to the input, weight and bias."""
    torch.manual_seed(0)
    plain = torch.nn.Conv2d(3, 8, kernel, stride, pad)
    fast = StridedInputConv2d(3, 8, kernel, stride, pad)
    fast.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, h, w, requires_grad=True)
    y_plain, y_fast = plain(x), fast(x)
    np.testing.assert_array_equal(y_fast.detach().numpy(), y_plain.detach().numpy())
    g = torch.randn_like(y_plain)
    grads_plain = torch.autograd.grad(y_plain, [x, plain.weight, plain.bias], g)
    grads_fast = torch.autograd.grad(y_fast, [x, fast.weight, fast.bias], g)
    for mine, ref in zip(grads_fast, grads_plain):
        assert_close(mine.numpy().astype(np.float64), ref.numpy().astype(np.float64))


def test_first_strided_convolutions_use_the_fast_input_gradient(tmp_path):
    body = """
    layer { name: "c1" type: "Convolution" bottom: "data" top: "c1" convolution_param { num_output: 8 kernel_size: 3
            stride: 2 } }
    layer { name: "c2" type: "Convolution" bottom: "c1" top: "c2" convolution_param { num_output: 4 kernel_size: 3
            stride: 2 } }
    layer { name: "c3" type: "Convolution" bottom: "data" top: "c3" convolution_param { num_output: 6 kernel_size: 3
            stride: 2 group: 3 } }
    """
    model = load_caffe_model(write_net(tmp_path, body, (1, 3, 16, 16))[0], None)
    assert [type(model.layers[n]).__name__ for n in ("c1", "c2", "c3")] == ["StridedInputConv2d", "Conv2d", "Conv2d"]


@pytest.mark.parametrize("m,density", [(1, 0.0), (1, 1 / 4096), (1, 0.1), (1, 0.45), (1, 0.65), (1, 0.9), (3, 0.2), (3, 1.0)])
def test_sparse_rows_matmul_equals_dense(m, density):
    gen = torch.Generator().manual_seed(4)
    weight = torch.randn(4096, 300, generator=gen)
    grad = torch.randn(m, 4096, generator=gen) * (torch.rand(m, 4096, generator=gen) < density)
    if m == 3:
        grad[1] = 0  # an image with no gradient at all
    mine, ref = sparse_rows_matmul(grad, weight), grad @ weight
    assert mine.shape == ref.shape
    assert_close(mine.numpy().astype(np.float64), ref.numpy().astype(np.float64))


def test_inner_product_gradients_with_trainable_weights(tmp_path):
    """The row-skipping backward pass also gives the weight and bias gradients when they are asked for."""
    proto, _ = write_net(tmp_path, 'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
                                   'inner_product_param { num_output: 7 } }', (2, 3, 4, 4))
    model = load_caffe_model(proto, None).requires_grad_(True)
    fc = model.layers["fc"]
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    g = torch.relu(torch.randn(2, 7))
    mine = torch.autograd.grad(model(x), [x, fc.weight, fc.bias], g)
    ref = torch.autograd.grad(torch.nn.functional.linear(x.flatten(1), fc.weight, fc.bias), [x, fc.weight, fc.bias], g)
    for a, b in zip(mine, ref):
        assert_close(a.numpy().astype(np.float64), b.numpy().astype(np.float64))


@pytest.mark.parametrize("channels,size,k", [(8, 5, 2.0), (3, 5, 1.0), (16, 3, 1.0), (6, 1, 1.5)])
def test_lrn_closed_form_gradient_equals_autograd(channels, size, k):
    """Caffe's closed-form LRN backward pass equals autograd through the forward formula (float64)."""
    gen = torch.Generator().manual_seed(5)
    x = (torch.randn(2, channels, 5, 4, generator=gen, dtype=torch.float64) * 40).requires_grad_(True)
    g = torch.randn(2, channels, 5, 4, generator=gen, dtype=torch.float64)
    module = CaffeLRN(size, 1e-3, 0.75, k)
    (mine,) = torch.autograd.grad(module(x), x, g)
    half = (size - 1) // 2
    padded = torch.nn.functional.pad(x * x, (0, 0, 0, 0, half, half))
    window = sum(padded[:, i:i + channels] for i in range(size))
    (ref,) = torch.autograd.grad(x * (k + 1e-3 / size * window) ** -0.75, x, g)
    assert_close(mine.numpy(), ref.numpy(), 1e-10)
