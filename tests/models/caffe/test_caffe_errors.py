"""Bad Caffe input is a one-line UsageError that names what is wrong: unsupported layer types, missing or
mis-shaped weights, malformed prototxts, unreadable files, broken graphs."""

import numpy as np
import pytest
import torch

from dvtoolbox.errors import UsageError
from dvtoolbox.models.caffe import caffe_pb2, load_caffe_model

from .helpers import ref_path, write_caffemodel, write_net


def usage_error(*args, **kwargs) -> str:
    with pytest.raises(UsageError) as info:
        load_caffe_model(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def tiny_caffemodel_without(tmp_path, drop=(), replace=None):
    """tiny.caffemodel with the layers in ``drop`` removed and ``replace`` (name -> arrays) swapped in."""
    net = caffe_pb2.NetParameter()
    with open(ref_path("tiny.caffemodel"), "rb") as f:
        net.ParseFromString(f.read())
    kept = caffe_pb2.NetParameter()
    for layer in net.layer:
        if layer.name in drop:
            continue
        new = kept.layer.add()
        new.CopyFrom(layer)
        if replace and layer.name in replace:
            del new.blobs[:]
            for array in replace[layer.name]:
                blob = new.blobs.add()
                blob.shape.dim.extend(array.shape)
                blob.data.extend(np.asarray(array, np.float32).ravel().tolist())
    path = tmp_path / "edited.caffemodel"
    path.write_bytes(kept.SerializeToString())
    return str(path)


def test_unsupported_layer_type_v2(tmp_path):
    body = 'layer { name: "act" type: "PReLU" bottom: "data" top: "act" }'
    message = usage_error(write_net(tmp_path, body)[0], None)
    assert "'act'" in message and "'PReLU'" in message and "not supported" in message and "Convolution" in message


def test_unsupported_layer_type_v1(tmp_path):
    proto = tmp_path / "v1.prototxt"
    proto.write_text('input: "data" input_dim: 1 input_dim: 3 input_dim: 4 input_dim: 4\n'
                     'layers { name: "abs" type: ABSVAL bottom: "data" top: "abs" }')
    message = usage_error(str(proto), None)
    assert "'abs'" in message and "'AbsVal'" in message


def test_data_layer_hints_at_deploy_net(tmp_path):
    body = 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "data" bottom: "data" top: "loss" }'
    message = usage_error(write_net(tmp_path, body)[0], None)
    assert "'loss'" in message and "'SoftmaxWithLoss'" in message and "deploy" in message


def test_missing_weights_name_the_layer_and_shapes(tmp_path):
    message = usage_error(ref_path("tiny.prototxt"), tiny_caffemodel_without(tmp_path, drop={"conv2"}))
    assert "'conv2'" in message and "no weights" in message and "(16, 4, 3, 3)" in message and "(16,)" in message


def test_mis_shaped_weights_name_the_layer_and_both_shapes(tmp_path):
    bad = {"conv2": [np.zeros((16, 8, 3, 3)), np.zeros(16)]}
    message = usage_error(ref_path("tiny.prototxt"), tiny_caffemodel_without(tmp_path, replace=bad))
    assert "'conv2'" in message and "(16, 8, 3, 3)" in message and "(16, 4, 3, 3)" in message


def test_mis_shaped_inner_product(tmp_path):
    bad = {"fc1": [np.zeros((32, 899)), np.zeros(32)]}
    message = usage_error(ref_path("tiny.prototxt"), tiny_caffemodel_without(tmp_path, replace=bad))
    assert "'fc1'" in message and "(32, 899)" in message and "(32, 900)" in message


def test_wrong_number_of_blobs(tmp_path):
    bad = {"conv3b": [np.zeros((12, 16, 1, 1)), np.zeros(12)]}  # bias_term: false in the prototxt
    message = usage_error(ref_path("tiny.prototxt"), tiny_caffemodel_without(tmp_path, replace=bad))
    assert "'conv3b'" in message and "2 parameter blob(s)" in message and "needs 1" in message


def test_legacy_blob_must_pad_with_ones(tmp_path):
    proto, weights = write_net(tmp_path, 'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
                                         'inner_product_param { num_output: 2 bias_term: false } }',
                               (1, 3, 2, 2), {"fc": [np.zeros((2, 1, 2, 6))]}, legacy_weights=True)
    message = usage_error(proto, weights)
    assert "'fc'" in message and "(2, 1, 2, 6)" in message and "(2, 12)" in message


def test_extra_caffemodel_layers_are_ignored(tmp_path):
    extra = caffe_pb2.NetParameter()
    with open(ref_path("tiny.caffemodel"), "rb") as f:
        extra.ParseFromString(f.read())
    layer = extra.layer.add()
    layer.name = "not_in_the_prototxt"
    layer.blobs.add().data.extend([1.0])
    path = tmp_path / "extra.caffemodel"
    path.write_bytes(extra.SerializeToString())
    model = load_caffe_model(ref_path("tiny.prototxt"), str(path))
    reference = load_caffe_model(ref_path("tiny.prototxt"), ref_path("tiny.caffemodel"))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))


@pytest.mark.parametrize("text,expected", [
    ('layer { name: "c" type: "Convolution" bottom: "data" top: "c"', "cannot parse"),
    ('layer { name: "c" colour: "blue" }', "colour"),
    ('layers { name: "c" type: NOT_A_TYPE }', "NOT_A_TYPE"),
])
def test_malformed_prototxt(tmp_path, text, expected):
    message = usage_error(write_net(tmp_path, text)[0], None)
    assert "cannot parse deploy prototxt" in message and expected in message


def test_missing_files(tmp_path):
    assert "no such file" in usage_error(str(tmp_path / "nope.prototxt"), None)
    assert "no such file" in usage_error(ref_path("tiny.prototxt"), str(tmp_path / "nope.caffemodel"))


@pytest.mark.parametrize("content", [b"\xff\xff\xff\xff", b"", b"name: 'text, not binary'"])
def test_weights_file_that_is_not_a_caffemodel(tmp_path, content):
    path = tmp_path / "bad.caffemodel"
    path.write_bytes(content)
    message = usage_error(ref_path("tiny.prototxt"), str(path))
    assert "cannot read net weights" in message


@pytest.mark.parametrize("body,input_shape,expected", [
    ('layer { name: "r" type: "ReLU" bottom: "nothing" top: "r" }', (1, 3, 4, 4), "'nothing'"),
    ('layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n'
     'layer { name: "s" type: "Sigmoid" bottom: "data" top: "r" }', (1, 3, 4, 4), "produced by both"),
    ('layer { name: "r" type: "ReLU" bottom: "data" top: "r" }', (1, 1, 4, 4), "(N, 3, H, W)"),
    ('layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: STOCHASTIC kernel_size: 2 } }',
     (1, 3, 4, 4), "STOCHASTIC"),
    ('layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: MAX kernel_size: 5 } }',
     (1, 3, 4, 4), "smaller than the kernel"),
    ('layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 4 '
     'kernel_size: 1 group: 2 } }', (1, 3, 4, 4), "group 2"),
    ('layer { name: "e" type: "Eltwise" bottom: "data" top: "e" }', (1, 3, 4, 4), "bottom blobs"),
    ('layer { name: "n" type: "LRN" bottom: "data" top: "n" lrn_param { local_size: 4 } }', (1, 3, 4, 4), "odd"),
])
def test_broken_nets(tmp_path, body, input_shape, expected):
    message = usage_error(write_net(tmp_path, body, input_shape)[0], None)
    assert expected in message


def test_no_input(tmp_path):
    proto = tmp_path / "noinput.prototxt"
    proto.write_text('layer { name: "r" type: "ReLU" bottom: "data" top: "r" }')
    assert "no input declared" in usage_error(str(proto), None)


def test_unknown_end_lists_the_blobs():
    model = load_caffe_model(ref_path("tiny.prototxt"), None)
    with pytest.raises(UsageError, match=r"unknown blob 'fc9'; valid blobs: data, conv1@conv1"):
        model(torch.zeros(1, 3, 32, 32), end="fc9")


def test_write_caffemodel_helper_round_trips(tmp_path):
    """The helper the other tests use writes what the loader reads (V2 shapes and V1 legacy blobs)."""
    w = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)
    for legacy in (False, True):
        path = tmp_path / f"c{legacy}.caffemodel"
        write_caffemodel(path, {"c": [w, np.ones(2)]}, legacy)
        proto, _ = write_net(tmp_path, 'layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
                                       'convolution_param { num_output: 2 kernel_size: 2 } }', (1, 3, 4, 4))
        model = load_caffe_model(proto, str(path))
        np.testing.assert_array_equal(model.layers["c"].weight.numpy(), w)


@pytest.mark.parametrize("body,expected", [
    ('layer { name: "r" type: "ReLU" bottom: "data" top: "forward" }', "'forward'"),
    ('layer { name: "keys" type: "ReLU" bottom: "data" top: "r" }', "'keys'"),
    ('layer { name: "r" type: "ReLU" bottom: "data" top: "a.b" }\n'
     'layer { name: "s" type: "ReLU" bottom: "data" top: "a_b" }', "'a_b'"),
])
def test_names_that_cannot_be_modules(tmp_path, body, expected):
    message = usage_error(write_net(tmp_path, body)[0], None)
    assert expected in message and "rename" in message

