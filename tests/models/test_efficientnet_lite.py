"""The embedded EfficientNet-Lite0: exact state dict, real photographs, named layers, weights errors, preprocessing."""

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dvtoolbox.errors import UsageError
from dvtoolbox.io.images import load_image_rgb
from dvtoolbox.models.capture import LayerCapture, layer_shapes
from dvtoolbox.models.pixel_space import InputContract
from dvtoolbox.models.efficientnet_lite import default_weights_path, efficientnet_lite0
from dvtoolbox.models.layers import Conv2dSame
from dvtoolbox.models.pixel_space import image_to_model_input
from dvtoolbox.models.registry import create_model, list_models

pytestmark = pytest.mark.filterwarnings("error")

IMAGES = os.path.join(os.path.dirname(__file__), "..", "data", "images")

# tests/data/images/README.md; the two ambiguous scenes are left out on purpose.
LABELLED = [
    ("ILSVRC2012_val_00000610.jpg", 290, "jaguar"),
    ("ILSVRC2012_val_00006451.jpg", 368, "gibbon"),
    ("ILSVRC2012_val_00006491.jpg", 2, "great white shark"),
    ("ILSVRC2012_val_00008338.jpg", 207, "golden retriever"),
    ("ILSVRC2012_val_00011425.jpg", 365, "orangutan"),
    ("ILSVRC2012_val_00011425_gray.jpg", 365, "orangutan"),
    ("ILSVRC2012_val_00016655.jpg", 554, "fireboat"),
    ("ILSVRC2012_val_00018548.jpg", 919, "street sign"),
    ("ILSVRC2012_val_00020333.jpg", 407, "ambulance"),
    ("ILSVRC2012_val_00029739.jpg", 515, "cowboy hat"),
]


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(2)
    return efficientnet_lite0()


def photo_input(model, name):
    return image_to_model_input(load_image_rgb(os.path.join(IMAGES, name)), model.input_contract)


def test_state_dict_keys_and_shapes_equal_the_file(model):
    state = torch.load(default_weights_path(), map_location="cpu", weights_only=True)
    ours = model.state_dict()
    assert list(ours) == list(state)
    assert all(ours[k].shape == state[k].shape for k in state)
    assert torch.equal(ours["_blocks.15._project_conv.weight"], state["_blocks.15._project_conv.weight"])
    model.load_state_dict(state, strict=True)


def test_factory_returns_eval_model_with_contract(model):
    contract = model.input_contract
    assert not model.training
    assert contract.size == (224, 224) and contract.channel_order == "RGB"
    assert contract.mean == (127.0, 127.0, 127.0)
    assert contract.label_layers == ("fc8", "prob")
    assert len(contract.labels) == 1000
    assert (contract.labels[0], contract.labels[365], contract.labels[999]) == ("tench", "orangutan", "toilet tissue")


def test_registered():
    assert "efficientnet_lite0" in list_models()
    assert isinstance(create_model("efficientnet_lite0", weights=None).input_contract, InputContract)


@pytest.mark.parametrize("name, index, label", LABELLED, ids=[f"{n[15:23]}-{lbl}" for n, _, lbl in LABELLED])
def test_photograph_top1(model, name, index, label):
    with torch.no_grad():
        logits = model(photo_input(model, name))
    assert logits.shape == (1, 1000)
    assert logits.argmax(1).item() == index
    assert model.input_contract.labels[index] == label


def test_fc8_and_prob_reachable(model):
    x = photo_input(model, LABELLED[0][0])
    with torch.no_grad(), LayerCapture(model, ["fc8", "prob", "_fc"]) as cap:
        logits = model(x)
    assert torch.equal(cap.outputs["fc8"], logits)
    assert torch.equal(cap.outputs["_fc"], logits)
    assert torch.allclose(cap.outputs["prob"], torch.softmax(logits, dim=1))
    assert cap.outputs["prob"].sum().item() == pytest.approx(1.0, abs=1e-5)


def test_activation_modules_are_separate_and_not_in_place(model):
    x = photo_input(model, LABELLED[0][0])
    with torch.no_grad(), LayerCapture(model, ["_blocks.3._bn1", "_blocks.3._act1"]) as cap:
        model(x)
    pre, post = cap.outputs["_blocks.3._bn1"], cap.outputs["_blocks.3._act1"]
    assert pre.min() < 0 and pre.max() > 6
    assert torch.equal(post, pre.clamp(0, 6))


def test_layer_shapes(model):
    shapes = layer_shapes(model, (224, 224))
    assert shapes["_normalize"] == (3, 224, 224)
    assert shapes["_conv_stem"] == (32, 112, 112)
    assert shapes["_blocks.0"] == (16, 112, 112)
    assert shapes["_blocks.1._expand_conv"] == (96, 112, 112)
    assert shapes["_blocks.1"] == (24, 56, 56)
    assert shapes["_blocks.3._depthwise_conv"] == (144, 28, 28)
    assert shapes["_blocks.4"] == (40, 28, 28)
    assert shapes["_blocks.7"] == (80, 14, 14)
    assert shapes["_blocks.10"] == (112, 14, 14)
    assert shapes["_blocks.14"] == (192, 7, 7)
    assert shapes["_blocks.15"] == (320, 7, 7)
    assert shapes["_conv_head"] == shapes["_act1"] == (1280, 7, 7)
    assert shapes["_fc"] == shapes["fc8"] == shapes["prob"] == (1000,)
    assert list(shapes)[-3:] == ["_fc", "fc8", "prob"]


def test_chosen_conventions(model):
    assert isinstance(model._conv_stem, Conv2dSame) and isinstance(model._blocks[3]._depthwise_conv, Conv2dSame)
    assert {m.eps for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {1e-3}
    assert model._normalize.std.flatten().tolist() == [128.0, 128.0, 128.0]


def test_tf_same_padding_puts_the_odd_pixel_bottom_right():
    conv = Conv2dSame(1, 1, 3, 2, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        out = conv(torch.ones(1, 1, 4, 4))
    assert out[0, 0].tolist() == [[9.0, 6.0], [6.0, 4.0]]


def _same_padding_pair(shape, kernel, groups, memory_format):
    """(Conv2dSame's output and input gradient, F.pad + convolution's), stride 1, seeded weights and input."""
    gen = torch.Generator().manual_seed(0)
    conv = Conv2dSame(shape[1], shape[1], kernel, 1, groups=groups, bias=True).to(memory_format=memory_format)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
        conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen))
    x = (torch.randn(shape, generator=gen) * 3).contiguous(memory_format=memory_format).requires_grad_(True)
    g = torch.randn(shape, generator=gen)
    out = conv(x)
    ref = F.conv2d(F.pad(x, (kernel // 2,) * 4), conv.weight, conv.bias, 1, 0, 1, groups)
    return (out, torch.autograd.grad(out, x, g)[0]), (ref, torch.autograd.grad(ref, x, g)[0])


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("shape, kernel", [((1, 32, 112, 112), 3), ((3, 240, 28, 28), 5), ((1, 1152, 7, 7), 5)])
def test_symmetric_same_padding_inside_the_convolution_gives_the_padded_copys_bits(shape, kernel, memory_format):
    """Stride 1, odd kernel, depthwise (EfficientNet's): the convolution's own zero padding gives the forward and
    input gradient of the explicit F.pad + convolution bit for bit (the CPU's kernels)."""
    (out, grad), (ref, ref_grad) = _same_padding_pair(shape, kernel, shape[1], memory_format)
    assert torch.equal(out, ref) and torch.equal(grad, ref_grad)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_symmetric_same_padding_of_a_dense_convolution_to_float32_rounding(memory_format):
    """A dense convolution (InceptionV1's) may sum in another order: the same numbers to float32 rounding."""
    (out, grad), (ref, ref_grad) = _same_padding_pair((2, 6, 15, 9), 3, 1, memory_format)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-6, atol=1e-5)


def test_tf_same_padding_on_odd_size(model):
    assert layer_shapes(model, (225, 223))["_conv_stem"] == (32, 113, 112)


def test_random_weights_are_seeded():
    torch.manual_seed(1)
    a = efficientnet_lite0(weights=None)
    torch.manual_seed(1)
    b = efficientnet_lite0(weights=None)
    assert not a.training
    assert torch.equal(a._blocks[5]._project_conv.weight, b._blocks[5]._project_conv.weight)
    with torch.no_grad():
        out = a(torch.zeros(1, 3, 224, 224))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()


def test_missing_weights_file(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        efficientnet_lite0(weights=tmp_path / "nope.pth")


def test_unreadable_weights_file(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(b"not a state dict")
    with pytest.raises(UsageError, match="cannot read weights file"):
        efficientnet_lite0(weights=str(path))


def test_wrong_shape_names_key_and_both_shapes(tmp_path):
    state = torch.load(default_weights_path(), map_location="cpu", weights_only=True)
    state["_fc.bias"] = torch.zeros(10)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(UsageError, match=r"key '_fc\.bias': model expects shape \(1000,\), file has \(10,\)"):
        efficientnet_lite0(weights=path)


def test_missing_and_extra_keys(tmp_path):
    state = torch.load(default_weights_path(), map_location="cpu", weights_only=True)
    del state["_bn0.running_var"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(UsageError, match=r"key '_bn0\.running_var': model expects shape \(32,\), file has absent"):
        efficientnet_lite0(weights=tmp_path / "missing.pth")
    state = {"extra.weight": torch.zeros(2), **efficientnet_lite0(weights=None).state_dict()}
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(UsageError, match=r"key 'extra\.weight': model expects shape absent, file has \(2,\)"):
        efficientnet_lite0(weights=tmp_path / "extra.pth")


def test_image_to_model_input():
    img = np.random.randint(0, 256, (300, 400, 3), dtype=np.uint8)
    before = img.copy()
    rgb = InputContract(size=(8, 8), channel_order="RGB", mean=(10.0, 20.0, 30.0))
    bgr = InputContract(size=(8, 8), channel_order="BGR", mean=(30.0, 20.0, 10.0))
    x_rgb = image_to_model_input(img, rgb, resize_to=300)
    x_bgr = image_to_model_input(img, bgr, resize_to=300)
    assert x_rgb.shape == (1, 3, 8, 8) and x_rgb.dtype == torch.float32
    assert np.array_equal(img, before)
    # resize_to equal to the shorter side keeps the pixels: the crop is the centre 8 x 8 of the image.
    expected = img[146:154, 196:204].astype(np.float32).transpose(2, 0, 1) - np.array([10, 20, 30])[:, None, None]
    assert np.array_equal(x_rgb[0].numpy(), expected)
    assert torch.equal(x_bgr, x_rgb.flip(1))
