"""Receptive fields: geometry == gradient support on a tiny conv net; caffenet-yos == the original's RegionComputer."""

import os

import pytest
import torch
from torch import nn

from dvtoolbox.exemplars.receptive_field import (GeometryUnavailable, Region, crop_box, field_function, geometric_field,
                                                 gradient_field, layer_geometry, max_crop_size, receptive_field)
from dvtoolbox.models.caffe import load_caffe_model
from dvtoolbox.models.layouts import Layout

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "caffe_models")


def tiny_conv_net():
    torch.manual_seed(0)
    net = nn.Sequential()
    net.add_module("conv1", nn.Conv2d(3, 4, 3, stride=1, padding=1))
    net.add_module("relu1", nn.ReLU())
    net.add_module("pool1", nn.MaxPool2d(2, 2))
    net.add_module("conv2", nn.Conv2d(4, 5, 3, stride=2, padding=1))
    net.add_module("relu2", nn.ReLU())
    net.add_module("pool2", nn.AvgPool2d(3, stride=1, padding=1))
    net.add_module("conv3", nn.Conv2d(5, 6, 2, stride=1, padding=0, dilation=1))
    net.add_module("conv4", nn.Conv2d(6, 3, 3, stride=2, padding=2))
    return net.eval()


@pytest.mark.parametrize("structural", [True, False])
@pytest.mark.parametrize("layer", ["conv1", "pool1", "conv2", "pool2", "conv3", "conv4"])
def test_geometric_field_equals_gradient_support_everywhere(layer, structural):
    """The plain gradient needs many inputs to switch every ReLU and max-pool input on; the structural one, one."""
    net = tiny_conv_net()
    geometry = layer_geometry(net, layer, (20, 19))
    h, w = geometry.grid
    for y in range(h):
        for x in range(w):
            expected = gradient_field(net, layer, y, x, (20, 19), n_inputs=1 if structural else 48, seed=y * w + x,
                                      structural=structural)
            assert geometric_field(geometry, y, x) == expected, (layer, y, x)


def test_the_structural_backward_sees_what_one_plain_gradient_misses():
    """One channel through a 3x3 max-pool: the plain gradient reaches the one maximum, the field is the window."""
    net = nn.Sequential(nn.Conv2d(3, 1, 1), nn.ReLU(), nn.MaxPool2d(3)).eval()
    plain = gradient_field(net, "2", 1, 1, (6, 6), n_inputs=1, structural=False)
    assert plain is None or plain.size == (1, 1)
    assert gradient_field(net, "2", 1, 1, (6, 6), n_inputs=1) == Region(3, 6, 3, 6)


def test_structural_backward_keeps_the_forward_values():
    from dvtoolbox.exemplars.receptive_field import StructuralBackward
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.ReLU6(), nn.Hardtanh(-0.5, 0.5)).eval()
    x = torch.randn(2, 3, 9, 9)
    with StructuralBackward():
        got = net(x)
    torch.testing.assert_close(got, net(x), rtol=0, atol=0)


def test_auto_uses_the_geometry_of_a_chain_and_the_gradient_of_a_branch():
    class Branches(nn.Module):  # two branches of equal grid size: a chain by sizes, not in fact
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 2, 5, padding=2), nn.Conv2d(3, 2, 3, padding=1)
            self.out = nn.Identity()

        def forward(self, x):
            return self.out(self.a(x) + self.b(x))

    torch.manual_seed(0)
    net = Branches().eval()
    geometry = layer_geometry(net, "out", (12, 12))
    assert geometric_field(geometry, 6, 6) == Region(3, 10, 3, 10)   # a then b in series: too large
    assert receptive_field(net, "out", 6, 6, (12, 12)) == Region(4, 9, 4, 9)


def test_refused_geometry_falls_back_to_the_gradient():
    net = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.AdaptiveAvgPool2d((4, 4)), nn.Conv2d(2, 2, 1)).eval()
    geometry = layer_geometry(net, "2", (8, 8))
    assert geometry.steps is None and "AdaptiveAvgPool2d" in geometry.why_not
    with pytest.raises(GeometryUnavailable):
        geometric_field(geometry, 0, 0)
    assert receptive_field(net, "2", 0, 0, (8, 8)) == Region(0, 3, 0, 3)   # pool window 0..1 + conv 3x3 pad 1


def test_fc_layer_sees_the_whole_input():
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 6, 4)).eval()
    geometry = layer_geometry(net, "2", (8, 8))
    assert geometric_field(geometry, 0, 0) == Region(0, 8, 0, 8) and max_crop_size(geometry) == (8, 8)


def test_token_layer_field_is_its_patch_and_global():
    class TinyViT(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch = nn.Conv2d(3, 8, 4, stride=4)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.block = nn.Identity()

        def forward(self, x):
            t = self.patch(x).flatten(2).transpose(1, 2)
            t = torch.cat([t.mean(1, keepdim=True), t], 1)
            return self.block(t + self.attn(t, t, t)[0])

    net = TinyViT().eval()
    layout = Layout("NTC", prefix=1, grid=(3, 4))
    geometry = layer_geometry(net, "block", (12, 16), layout)
    assert geometry.is_global
    assert receptive_field(net, "block", 1, 2, (12, 16), layout) == Region(4, 8, 8, 12)
    assert gradient_field(net, "block", 1, 2, (12, 16), layout) == Region(0, 12, 0, 16)  # attention: global


# ----------------------------------------------------------------------------- caffenet-yos and the original's rule


def original_region_converter(top_slice, top_size, filter_width, stride, pad=(0, 0)):
    """caffe_misc.region_converter, restated."""
    t = [max(0, min(top_size[0], top_slice[0])), max(0, min(top_size[0], top_slice[1])),
         max(0, min(top_size[1], top_slice[2])), max(0, min(top_size[1], top_slice[3]))]
    return [t[0] * stride[0] - pad[0], (t[1] - 1) * stride[0] + filter_width[0] - pad[0],
            t[2] * stride[1] - pad[1], (t[3] - 1) * stride[1] + filter_width[1] - pad[1]]


ORIGINAL_CONVERTERS = [  # RegionComputer.__init__: (name, top size, filter, stride, pad), from the data up
    ("conv1", (55, 55), (11, 11), (4, 4), (0, 0)), ("pool1", (27, 27), (3, 3), (2, 2), (0, 0)),
    ("conv2", (27, 27), (5, 5), (1, 1), (2, 2)), ("pool2", (13, 13), (3, 3), (2, 2), (0, 0)),
    ("conv3", (13, 13), (3, 3), (1, 1), (1, 1)), ("conv4", (13, 13), (3, 3), (1, 1), (1, 1)),
    ("conv5", (13, 13), (3, 3), (1, 1), (1, 1))]


def original_convert_region(layer, region):
    """RegionComputer.convert_region(layer, 'data', region), restated."""
    top = [name for name, *_ in ORIGINAL_CONVERTERS].index(layer)
    for _name, size, filt, stride, pad in reversed(ORIGINAL_CONVERTERS[:top + 1]):
        region = original_region_converter(region, size, filt, stride, pad)
    return region


def original_crop(layer, ii, jj, grid):
    """max_tracker.output_max_patches' crop for a conv unit: (data slice, out slice, size), restated."""
    mid = original_convert_region(layer, (grid[0] // 2, grid[0] // 2 + 1, grid[1] // 2, grid[1] // 2 + 1))
    size_ii, size_jj = mid[1] - mid[0], mid[3] - mid[2]
    d0, d1, e0, e1 = original_convert_region(layer, (ii, ii + 1, jj, jj + 1))
    ii_out, jj_out = size_ii - (d1 - d0), size_jj - (e1 - e0)
    o0, o1 = (ii_out, size_ii) if d0 == 0 else (0, size_ii - ii_out)
    p0, p1 = (jj_out, size_jj) if e0 == 0 else (0, size_jj - jj_out)
    return (d0, d1, e0, e1), (o0, o1, p0, p1), (size_ii, size_jj)


@pytest.fixture(scope="module")
def caffenet_conv():
    return load_caffe_model(os.path.join(DATA, "caffenet-yos-conv-deploy.prototxt"), None)


@pytest.mark.parametrize("layer", ["conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5"])
def test_caffenet_fields_and_crops_equal_the_original_rule(caffenet_conv, layer):
    geometry = layer_geometry(caffenet_conv, layer, (227, 227))
    grid = geometry.grid
    size = max_crop_size(geometry)
    for ii in range(grid[0]):
        for jj in range(grid[1]):
            field = geometric_field(geometry, ii, jj)
            box = crop_box(field, size)
            src, dst, expected_size = original_crop(layer, ii, jj, grid)
            assert (field.y0, field.y1, field.x0, field.x1) == tuple(src), (layer, ii, jj)
            assert (box.dst.y0, box.dst.y1, box.dst.x0, box.dst.x1) == tuple(dst), (layer, ii, jj)
            assert box.size == expected_size
    if layer == "conv5":
        assert size == (163, 163)   # the original's comment in get_max_data_extent


def test_caffenet_geometry_agrees_with_the_gradient_at_conv3(caffenet_conv):
    geometry = layer_geometry(caffenet_conv, "conv3", (227, 227))
    for y, x in [(0, 0), (6, 6), (12, 3)]:
        assert geometric_field(geometry, y, x) == gradient_field(caffenet_conv, "conv3", y, x, (227, 227), n_inputs=4)


def test_googlenet_inception_branches_fall_back_to_the_gradient():
    """inception_3a's branches (1x1, 3x3, 5x5, pool + 1x1) all keep the 28x28 grid, so the sizes chain, but the field
    is the widest branch's, not all of them in series: auto sees the difference and takes the gradient, which
    equals the field through the 5x5 branch alone at every position tried."""
    from dvtoolbox.exemplars.receptive_field import push_down, record_steps
    net = load_caffe_model(os.path.join(DATA, "bvlc-googlenet-deploy.prototxt"), None)
    layer, size = "inception_3a/output", (224, 224)
    steps, _ = record_steps(net, layer, size)
    widest = [s for s in steps if not s.name.startswith("layers.inception_3a/")
              or s.name.endswith(("/5x5_reduce", "/5x5"))]
    geometry = layer_geometry(net, layer, size)
    _, field_of = field_function(net, layer, size)
    for y, x in [(0, 0), (27, 3)]:
        expected = push_down(widest, Region(y, y + 1, x, x + 1))
        assert field_of(y, x) == expected == receptive_field(net, layer, y, x, size)
        assert geometric_field(geometry, y, x) != expected
