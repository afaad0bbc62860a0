"""The original's deploy prototxts build (random weights) and every principal blob has the shape Caffe's rules give.

Expected shapes are worked out here from the rules, not read from the model:
convolution ``floor((H + 2p - d(k - 1) - 1) / s) + 1``; pooling ``ceil((H + 2p - k) / s) + 1``, minus one when padded
and the last window starts at or beyond ``H + p``; channel counts from the architectures' num_output values.
"""

import functools
import math

import pytest
import torch

from dvtoolbox.models.capture import LayerCapture
from dvtoolbox.models.caffe import load_caffe_model

from .helpers import model_path


def conv(h, k, s=1, p=0, d=1):
    return (h + 2 * p - d * (k - 1) - 1) // s + 1


def pool(h, k, s=1, p=0):
    out = math.ceil((h + 2 * p - k) / s) + 1
    if p and (out - 1) * s >= h + p:
        out -= 1
    return out


def test_shape_rules_themselves():
    assert conv(227, 11, 4) == 55 and conv(224, 7, 2, 3) == 112 and conv(13, 1, 1, 1) == 15
    assert pool(55, 3, 2) == 27 and pool(13, 3, 2) == 6  # ceil: floor would give 27 and 6 too here ...
    assert pool(16, 3, 2) == 8 and pool(112, 3, 2) == 56  # ... but not here (floor: 7 and 55)
    assert pool(8, 3, 2, 1) == 5 and pool(28, 3, 1, 1) == 28 and pool(5, 2, 2, 1) == 3  # last one: clipped


def caffenet_expected():
    c1 = conv(227, 11, 4)          # 55
    p1 = pool(c1, 3, 2)            # 27
    c2 = conv(p1, 5, 1, 2)         # 27
    p2 = pool(c2, 3, 2)            # 13
    c3 = conv(p2, 3, 1, 1)         # 13
    p5 = pool(c3, 3, 2)            # 6
    assert (c1, p1, c2, p2, c3, p5) == (55, 27, 27, 13, 13, 6)
    return {
        "data": (3, 227, 227), "conv1": (96, c1, c1), "pool1": (96, p1, p1), "norm1": (96, p1, p1),
        "conv2": (256, c2, c2), "pool2": (256, p2, p2), "norm2": (256, p2, p2), "conv3": (384, c3, c3),
        "conv4": (384, c3, c3), "conv5": (256, c3, c3), "pool5": (256, p5, p5), "fc6": (4096,), "fc7": (4096,),
        "fc8": (1000,), "prob": (1000,),
        "conv1@conv1": (96, c1, c1), "fc6@fc6": (4096,), "fc7@drop7": (4096,),
    }


def googlenet_expected():
    c1 = conv(224, 7, 2, 3)        # 112
    p1 = pool(c1, 3, 2)            # 56
    c2 = conv(p1, 3, 1, 1)         # 56
    p2 = pool(c2, 3, 2)            # 28
    p3 = pool(p2, 3, 2)            # 14
    p4 = pool(p3, 3, 2)            # 7
    p5 = pool(p4, 7, 1)            # 1 (AVE 7x7)
    assert (c1, p1, c2, p2, p3, p4, p5) == (112, 56, 56, 28, 14, 7, 1)
    # inception output channels = 1x1 + 3x3 + 5x5 + pool_proj (Szegedy et al. 2015, table 1)
    inception = {"3a": (64, 128, 32, 32, p2), "3b": (128, 192, 96, 64, p2), "4a": (192, 208, 48, 64, p3),
                 "4b": (160, 224, 64, 64, p3), "4c": (128, 256, 64, 64, p3), "4d": (112, 288, 64, 64, p3),
                 "4e": (256, 320, 128, 128, p3), "5a": (256, 320, 128, 128, p4), "5b": (384, 384, 128, 128, p4)}
    expected = {
        "data": (3, 224, 224), "conv1/7x7_s2": (64, c1, c1), "pool1/3x3_s2": (64, p1, p1),
        "pool1/norm1": (64, p1, p1), "conv2/3x3_reduce": (64, p1, p1), "conv2/3x3": (192, c2, c2),
        "conv2/norm2": (192, c2, c2), "pool2/3x3_s2": (192, p2, p2), "pool3/3x3_s2": (480, p3, p3),
        "pool4/3x3_s2": (832, p4, p4), "pool5/7x7_s1": (1024, p5, p5), "loss3/classifier": (1000,),
        "prob": (1000,),
    }
    for name, (a, b, c, d, size) in inception.items():
        expected[f"inception_{name}/output"] = (a + b + c + d, size, size)
        expected[f"inception_{name}/pool"] = (expected_input_channels(name, inception), pool(size, 3, 1, 1),
                                               pool(size, 3, 1, 1))
        expected[f"inception_{name}/5x5"] = (c, conv(size, 5, 1, 2), conv(size, 5, 1, 2))
    return expected


def expected_input_channels(name, inception):
    """Channels entering inception module ``name``: the previous module's output (192 before 3a)."""
    order = list(inception)
    i = order.index(name)
    return 192 if i == 0 else sum(inception[order[i - 1]][:4])


def squeezenet_expected(version):
    if version == "1.0":
        c1 = conv(227, 7, 2)       # 111
        first = 96
        p1 = pool(c1, 3, 2)        # 55
        pa = pool(p1, 3, 2)        # pool4: 27
        pb = pool(pa, 3, 2)        # pool8: 13
        sizes = {2: p1, 3: p1, 4: p1, 5: pa, 6: pa, 7: pa, 8: pa, 9: pb}
        pools = {"pool1": (first, p1), "pool4": (256, pa), "pool8": (512, pb)}
        c10 = conv(pb, 1, 1, 1)    # 15: conv10 has pad 1
        assert (c1, p1, pa, pb, c10) == (111, 55, 27, 13, 15)
    else:
        c1 = conv(227, 3, 2)       # 113
        first = 64
        p1 = pool(c1, 3, 2)        # 56
        pa = pool(p1, 3, 2)        # pool3: 28
        pb = pool(pa, 3, 2)        # pool5: 14
        sizes = {2: p1, 3: p1, 4: pa, 5: pa, 6: pb, 7: pb, 8: pb, 9: pb}
        pools = {"pool1": (first, p1), "pool3": (128, pa), "pool5": (256, pb)}
        c10 = conv(pb, 1, 1, 0)    # 14
        assert (c1, p1, pa, pb, c10) == (113, 56, 28, 14, 14)
    # fire modules: (squeeze, expand) per module (Iandola et al. 2016, table 1)
    fire = {2: (16, 64), 3: (16, 64), 4: (32, 128), 5: (32, 128), 6: (48, 192), 7: (48, 192), 8: (64, 256),
            9: (64, 256)}
    expected = {"data": (3, 227, 227), "conv1": (first, c1, c1), "conv10": (1000, c10, c10),
                "pool10": (1000, 1, 1), "prob": (1000, 1, 1)}
    for name, (channels, size) in pools.items():
        expected[name] = (channels, size, size)
    for i, (squeeze, expand) in fire.items():
        s = sizes[i]
        expected[f"fire{i}/squeeze1x1"] = (squeeze, s, s)
        expected[f"fire{i}/expand1x1"] = (expand, s, s)
        expected[f"fire{i}/expand3x3"] = (expand, conv(s, 3, 1, 1), conv(s, 3, 1, 1))
        expected[f"fire{i}/concat"] = (2 * expand, s, s)
    return expected


NETS = {
    "caffenet-yos-deploy.prototxt": (caffenet_expected, (227, 227), ("fc8", "prob")),
    "bvlc-googlenet-deploy.prototxt": (googlenet_expected, (224, 224), ("loss3/classifier", "prob")),
    "squeezenet-deploy.prototxt": (functools.partial(squeezenet_expected, "1.0"), (227, 227), ("pool10", "prob")),
    "squeezenet_v1.1-deploy.prototxt": (functools.partial(squeezenet_expected, "1.1"), (227, 227),
                                        ("pool10", "prob")),
}


@pytest.mark.parametrize("proto", sorted(NETS))
def test_blob_shapes_follow_caffe_rules(proto):
    expected_fn, size, label_layers = NETS[proto]
    expected = expected_fn()
    model = load_caffe_model(model_path(proto), None)
    assert model.input_contract.size == size
    assert model.input_contract.channel_order == "BGR"
    assert model.input_contract.label_layers == label_layers
    with torch.no_grad(), LayerCapture(model, expected) as cap:
        out = model(torch.zeros((1, 3) + size))
    got = {name: tuple(t.shape[1:]) for name, t in cap.outputs.items()}
    assert got == expected
    assert {name: model.blob_shapes[name] for name in expected} == expected  # build-time inference agrees
    assert tuple(out.shape[1:]) == expected["prob"]
    # every blob has a tap; in-place blobs have their versions and a gradient source
    assert all(model.gradient_sources[b] in model.blob_taps for b in model.gradient_sources)
    assert len(set(model.blob_taps)) == len(model.blob_taps)
