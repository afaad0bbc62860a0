"""The tiny net against real Caffe (tests/data/caffe_reference, see its README): every blob, the pre-ReLU values
of in-place blobs, every pushed gradient, for V1/V2 prototxt x V1/V2 caffemodel and the Input-layer prototxt.

Tolerance, as the reference README advises: ``abs(mine - ref) <= 1e-5 * abs(ref).max()`` for blobs and 1e-4 of the
max for gradients; ReLU zero patterns and the all-zero gradient exactly.
"""

import functools
import json

import numpy as np
import pytest
import torch

from dvtoolbox.models.capture import LayerCapture, gradient_source
from dvtoolbox.models.caffe import load_caffe_model

from .helpers import ref_path

COMBINATIONS = [
    ("tiny.prototxt", "tiny.caffemodel"),
    ("tiny.prototxt", "tiny_v1.caffemodel"),
    ("tiny_v1.prototxt", "tiny.caffemodel"),
    ("tiny_v1.prototxt", "tiny_v1.caffemodel"),
    ("tiny_inputlayer.prototxt", "tiny.caffemodel"),
]
BLOBS = ["data", "conv1", "pool1", "norm1", "conv2", "conv3a", "conv3b", "sum3", "poolc", "concat", "pool2", "gpool",
         "fc1", "fc2", "prob"]
IN_PLACE = {"conv1": "conv1@conv1", "conv2": "conv2@conv2", "sum3": "sum3@sum3", "fc1": "fc1@fc1"}
# file -> (tap pushed, unit): the withrelu files start backward at relu2, i.e. at the tap conv2@relu2.
GRADIENTS = {
    "grad_fc2_u3.npy": ("fc2", (3,)),
    "grad_prob_u6.npy": ("prob", (6,)),
    "grad_fc1_u5.npy": ("fc1", (5,)),
    "grad_conv2_c2_y4_x4_skiprelu.npy": ("conv2", (2, 4, 4)),
    "grad_conv2_c2_y4_x4_withrelu.npy": ("conv2@relu2", (2, 4, 4)),
    "grad_conv2_c7_y2_x4_skiprelu.npy": ("conv2", (7, 2, 4)),
    "grad_conv2_c7_y2_x4_withrelu.npy": ("conv2@relu2", (7, 2, 4)),
}


@functools.lru_cache(maxsize=None)
def tiny_model(proto, weights):
    return load_caffe_model(ref_path(proto), ref_path(weights))


@functools.lru_cache(maxsize=None)
def tiny_outputs(proto, weights):
    """Every tap's value after one forward pass of input.npy, as numpy arrays."""
    model = tiny_model(proto, weights)
    x = torch.from_numpy(np.load(ref_path("input.npy")))
    with torch.no_grad(), LayerCapture(model, model.blob_taps) as cap:
        model(x)
    return {name: t.numpy().copy() for name, t in cap.outputs.items()}


def assert_close_to_max(mine, ref, rel):
    assert mine.shape == ref.shape
    scale = np.abs(ref).max()
    err = np.abs(mine.astype(np.float64) - ref).max()
    assert err <= rel * scale, f"max abs error {err:.3g} > {rel} * {scale:.3g}"


@pytest.mark.parametrize("proto,weights", COMBINATIONS)
@pytest.mark.parametrize("blob", BLOBS)
def test_blob_equals_caffe(proto, weights, blob):
    assert_close_to_max(tiny_outputs(proto, weights)[blob], np.load(ref_path(f"blob_{blob}.npy")), 1e-5)


@pytest.mark.parametrize("proto,weights", COMBINATIONS)
@pytest.mark.parametrize("blob", sorted(IN_PLACE))
def test_pre_in_place_tap_equals_caffe_prerelu(proto, weights, blob):
    outputs = tiny_outputs(proto, weights)
    ref_pre = np.load(ref_path(f"blob_{blob}_prerelu.npy"))
    assert_close_to_max(outputs[IN_PLACE[blob]], ref_pre, 1e-5)
    # the zero pattern of the ReLU output is Caffe's exactly (no pre-ReLU value lies near 0)
    ref_post = np.load(ref_path(f"blob_{blob}.npy"))
    np.testing.assert_array_equal(outputs[blob] == 0, ref_post == 0)
    np.testing.assert_array_equal(outputs[blob] == 0, ref_pre <= 0)


@pytest.mark.parametrize("proto,weights", COMBINATIONS)
@pytest.mark.parametrize("filename", sorted(GRADIENTS))
def test_gradient_equals_caffe(proto, weights, filename):
    layer, unit = GRADIENTS[filename]
    model = tiny_model(proto, weights)
    x = torch.from_numpy(np.load(ref_path("input.npy"))).requires_grad_(True)
    source = gradient_source(model, layer)
    with LayerCapture(model, {layer, source}) as cap:
        model(x)
    (grad,) = torch.autograd.grad(cap.outputs[source][(0,) + unit], x)
    assert grad.is_contiguous()  # in the input's layout, although the net runs channels_last
    ref = np.load(ref_path(filename))
    if not ref.any():
        assert not grad.any()  # the withrelu gradient of an inactive unit is exactly zero
    else:
        assert_close_to_max(grad.numpy(), ref, 1e-4)


def test_push_semantics_names():
    model = tiny_model("tiny.prototxt", "tiny.caffemodel")
    assert model.gradient_sources == IN_PLACE
    assert gradient_source(model, "conv2") == "conv2@conv2"
    assert gradient_source(model, "conv2@relu2") == "conv2@relu2"
    assert gradient_source(model, "fc2") == "fc2"
    assert model.caffe_layer_outputs["relu2"] == "conv2@relu2"
    assert model.caffe_layer_outputs["drop_fc1"] == "fc1@drop_fc1"
    assert model.caffe_layer_outputs["conv3a"] == "conv3a"


def test_in_place_versions_are_the_caffe_sequence():
    outputs = tiny_outputs("tiny.prototxt", "tiny.caffemodel")
    # the last in-place version is the blob itself; Dropout is the identity at test time
    np.testing.assert_array_equal(outputs["conv2@relu2"], outputs["conv2"])
    np.testing.assert_array_equal(outputs["fc1@drop_fc1"], outputs["fc1@relu_fc1"])
    np.testing.assert_array_equal(outputs["fc1"], np.maximum(outputs["fc1@fc1"], 0))


@pytest.mark.parametrize("proto,weights", COMBINATIONS[1:])
def test_all_combinations_load_identical_state(proto, weights):
    base = tiny_model(*COMBINATIONS[0]).state_dict()
    other = tiny_model(proto, weights).state_dict()
    assert list(other) == list(base)
    for key in base:
        assert torch.equal(other[key], base[key]), key


@pytest.mark.parametrize("weights", ["tiny.caffemodel", "tiny_v1.caffemodel"])
def test_loaded_weights_equal_params_npz(weights):
    state = tiny_model("tiny.prototxt", weights).state_dict()
    with np.load(ref_path("params.npz")) as params:
        expected = {f"layers.{k.rsplit('_', 1)[0]}.{k.rsplit('_', 1)[1]}": params[k] for k in params.files}
    assert sorted(state) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(state[key].numpy(), value, err_msg=key)


def test_forward_returns_last_blob_and_stops_at_end():
    model = tiny_model("tiny.prototxt", "tiny.caffemodel")
    outputs = tiny_outputs("tiny.prototxt", "tiny.caffemodel")
    x = torch.from_numpy(np.load(ref_path("input.npy")))
    with torch.no_grad():
        np.testing.assert_array_equal(model(x).numpy(), outputs["prob"])
        np.testing.assert_array_equal(model(x, end="conv2").numpy(), outputs["conv2"])
        np.testing.assert_array_equal(model(x, end="conv2@conv2").numpy(), outputs["conv2@conv2"])
        with LayerCapture(model, ["fc2", "pool2"]) as cap:
            model(x, end="pool2")
    assert list(cap.outputs) == ["pool2"]  # layers after pool2 did not run


def test_blob_shapes_equal_caffe_manifest():
    with open(ref_path("manifest.json")) as f:
        manifest = json.load(f)["net"]["blob_shapes"]
    outputs = tiny_outputs("tiny.prototxt", "tiny.caffemodel")
    model = tiny_model("tiny.prototxt", "tiny.caffemodel")
    for blob, shape in manifest.items():
        assert outputs[blob].shape == tuple(shape)
        assert model.blob_shapes[blob] == tuple(shape[1:])


def test_input_contract_and_frozen_parameters():
    model = tiny_model("tiny_v1.prototxt", "tiny_v1.caffemodel")
    contract = model.input_contract
    assert contract.size == (32, 32)
    assert contract.channel_order == "BGR"
    assert contract.mean == (104.0, 117.0, 123.0)
    assert contract.label_layers == ("fc2", "prob")
    assert contract.labels is None
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())


def test_batch_of_two_is_two_independent_images():
    model = tiny_model("tiny.prototxt", "tiny.caffemodel")
    x = torch.from_numpy(np.load(ref_path("input.npy")))
    with torch.no_grad():
        both = model(torch.cat([x, x.flip(-1)]))
        assert_close_to_max(both[:1].numpy(), model(x).numpy(), 1e-5)
        assert_close_to_max(both[1:].numpy(), model(x.flip(-1)).numpy(), 1e-5)


def test_random_weights_are_seeded_and_leave_the_global_rng_alone():
    state = torch.get_rng_state()
    first = load_caffe_model(ref_path("tiny.prototxt"), None).state_dict()
    assert torch.equal(torch.get_rng_state(), state)
    again = load_caffe_model(ref_path("tiny.prototxt"), None).state_dict()
    other = load_caffe_model(ref_path("tiny.prototxt"), None, seed=1).state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["layers.conv1.weight"], other["layers.conv1.weight"])
