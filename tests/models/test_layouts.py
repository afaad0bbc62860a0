"""Layer layouts (dvtoolbox/models/layouts.py): tiny models of each layout whose activations are known in closed form,
objective values against hand-computed numbers (a layout mix-up fails them), inference on real architectures, and
one-line errors."""

import numpy as np
import pytest
import torch
from torch import nn

from dvtoolbox import objectives as O
from dvtoolbox.errors import UsageError
from dvtoolbox.models.capture import LayerCapture, named_layers
from dvtoolbox.models.layouts import Layout, canonical, canonical_shape, model_layouts, parse_layout
from dvtoolbox.objectives import Activations
from dvtoolbox.optimize.push import as_units3d

C, P, S = 6, 4, 16  # features, patch size, image side: a 4x4 grid of patches


class Tokens(nn.Module):
    """A token model whose feature k of patch (i, j) is the mean of channel k % 3 over that patch, times (k + 1);
    a class token of its own (all 7.0) comes first: (N, 1 + 16, 6)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Identity()
        self.blocks = nn.Sequential(nn.Identity())
        self.class_token = nn.Parameter(torch.full((1, 1, C), 7.0))

    def forward(self, x):
        patches = nn.functional.avg_pool2d(x, P)                                  # (N, 3, 4, 4)
        feats = torch.cat([patches[:, k % 3:k % 3 + 1] * (k + 1) for k in range(C)], dim=1)  # (N, 6, 4, 4)
        tokens = self.embed(feats.flatten(2).transpose(1, 2))                    # (N, 16, 6)
        tokens = torch.cat([self.class_token.expand(x.shape[0], -1, -1), tokens], dim=1)
        return self.blocks(tokens)


class ChannelsLast(nn.Module):
    """(N, H, W, C) inside, as ConvNeXt: a 1x1 "linear" over channels applied channels-last (feature k = (k + 1)
    times channel k % 3), then back to channels first."""

    def __init__(self):
        super().__init__()
        self.mix = nn.Linear(3, C, bias=False)
        with torch.no_grad():
            self.mix.weight.copy_(torch.tensor([[k + 1.0 if c == k % 3 else 0.0 for c in range(3)] for k in range(C)]))
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.mix(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)


def pixels(n=2, seed=0):
    return torch.from_numpy(np.random.RandomState(seed).uniform(0, 1, (n, 3, S, S)).astype(np.float32))


def capture(model, names, x):
    with LayerCapture(model, names) as cap, torch.no_grad():
        model(x)
    return dict(cap.outputs)


def test_token_layer_layout_is_inferred_and_channels_are_features():
    model, x = Tokens(), pixels()
    layouts = model_layouts(model, (S, S))
    assert layouts["blocks"] == Layout("NTC", prefix=1, grid=(4, 4))      # the class token, a 4x4 grid
    assert layouts["embed"] == Layout("NTC", prefix=0, grid=(4, 4))       # before the class token joins
    acts = Activations(capture(model, ["blocks"], x), layouts=layouts)
    patch_means = x.reshape(2, 3, 4, P, 4, P).mean((3, 5)).numpy()      # (N, 3, 4, 4) by hand
    for k in range(C):   # channel k = the feature averaged over the 16 patch tokens, class token left out
        expected = (k + 1) * patch_means[:, k % 3].mean()
        assert O.channel("blocks", k)(acts).item() == pytest.approx(expected, rel=1e-5)
    # with the class token: (16 patch values + 7) / 17
    expected = ((k + 1) * patch_means[:, k % 3].mean((1, 2)) * 16 + 7.0).mean() / 17
    assert O.channel("blocks", k, include_prefix=True)(acts).item() == pytest.approx(expected, rel=1e-5)
    # neuron (y, x) on the patch grid, and by token index (token 0 is the class token)
    assert O.neuron("blocks", 2, x=3, y=1)(acts).item() == pytest.approx(3 * patch_means[:, 2, 1, 3].mean(), rel=1e-5)
    assert O.neuron("blocks", 2, token=1 + 1 * 4 + 3)(acts).item() == pytest.approx(
        3 * patch_means[:, 2, 1, 3].mean(), rel=1e-5)
    assert O.neuron("blocks", 4, token=0)(acts).item() == 7.0
    # a layout mix-up would read token k: its value differs from the feature's
    assert acts["blocks"][:, 3].mean().item() != pytest.approx(O.channel("blocks", 3)(acts).item(), rel=1e-3)


def test_channels_last_layer_is_read_on_its_last_dimension():
    model, x = ChannelsLast(), pixels()
    layouts = model_layouts(model, (S, S))
    assert (layouts["mix"], layouts["act"]) == (Layout("NHWC"), Layout("NHWC"))
    acts = Activations(capture(model, ["act"], x), layouts=layouts)
    for k in range(C):
        assert O.channel("act", k)(acts).item() == pytest.approx((k + 1) * x[:, k % 3].mean().item(), rel=1e-5)
    assert O.neuron("act", 5, x=2, y=9)(acts).item() == pytest.approx(6 * x[:, 2, 9, 2].mean().item(), rel=1e-5)
    # the DVT push's units: (N, C, H, W) on the grid
    units = as_units3d(acts["act"], layouts["act"])
    assert units.shape == (2, C, S, S)
    torch.testing.assert_close(units[:, 4], 5 * x[:, 1])


def test_every_objective_kind_reads_channels_through_the_layout():
    """direction, layer, diversity, alignment, interpolation: the same numbers from NHWC as from its NCHW copy."""
    model, x = ChannelsLast(), pixels(3)
    out = capture(model, ["act"], x)["act"]                                    # (N, H, W, C)
    as_nhwc = Activations({"act": out}, layouts={"act": Layout("NHWC")})
    as_nchw = Activations({"act": out.permute(0, 3, 1, 2).contiguous()})     # channels first, no layout needed
    vec = torch.arange(C, dtype=torch.float32)
    for objective in (O.direction("act", vec), O.direction_neuron("act", vec, x=3, y=4), O.layer("act"),
                      O.diversity("act"), O.alignment("act"), O.channel_interpolate("act", 1, "act", 4),
                      O.neuron("act", 3), O.L2("act")):
        assert objective(as_nhwc).item() == pytest.approx(objective(as_nchw).item(), rel=1e-5), str(objective)


def test_canonical_against_numpy():
    t = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)         # 1 prefix token, a 2x2 grid
    grid = canonical(t, Layout("NTC", prefix=1, grid=(2, 2)))
    np.testing.assert_array_equal(grid.numpy(), t.numpy()[:, 1:].reshape(2, 2, 2, 3).transpose(0, 3, 1, 2))
    flat = canonical(t, Layout("NTC", prefix=1, grid=(2, 2), include_prefix=True))
    np.testing.assert_array_equal(flat.numpy(), t.numpy().transpose(0, 2, 1))
    assert canonical_shape((197, 768), Layout("NTC", prefix=1, grid=(14, 14))) == (768, 14, 14)
    assert canonical_shape((7, 7, 96), Layout("NHWC")) == (96, 7, 7)


@pytest.mark.parametrize("text, name, layout", [
    ("stages.1=NHWC", "stages.1", Layout("NHWC")),
    ("blocks.3=NTC:prefix=1:grid=14x14", "blocks.3", Layout("NTC", prefix=1, grid=(14, 14))),
    (" fc = NC ", "fc", Layout("NC")),
])
def test_parse_layout(text, name, layout):
    assert parse_layout(text) == (name, layout)


BIG = "99999999999999999999999"
BAD_LAYOUT_TEXTS = [  # (text, what the one line says after "layout '<text>': ")
    ("stages.1", "write NAME=KIND"), ("x=NWHC", "write NAME=KIND"), ("=NC", "write NAME=KIND"),
    ("x=", "write NAME=KIND"), ("x=NHWC:prefix=1", "only NTC takes options"), ("x=NTC:size=3", "only NTC takes"),
    ("x=NTC:prefix=1:prefix=1", "each at most once"), ("x=NTC:grid=14", "grid is HxW, two integers >= 1"),
    ("x=NTC:grid=14x", "grid is HxW"), ("x=NTC:grid=x14", "grid is HxW"), ("x=NTC:grid=0x0", "grid is HxW"),
    ("x=NTC:grid=0x4", "grid is HxW"), ("x=NTC:grid=2x2x2", "grid is HxW"), ("x=NTC:grid=axb", "grid is HxW"),
    ("x=NTC:grid=", "grid is HxW"), (f"x=NTC:grid={BIG}x1", "(at most 1000000)"), ("x=NTC:prefix=", "prefix is P"),
    ("x=NTC:prefix=-1", "prefix is P"), ("x=NTC:prefix=1.5", "prefix is P"), (f"x=NTC:prefix={BIG}", "prefix is P"),
    ("x=NTC:prefix=1000001", "(at most 1000000)"),
]


@pytest.mark.parametrize("text, expected", BAD_LAYOUT_TEXTS, ids=[t for t, _ in BAD_LAYOUT_TEXTS])
def test_parse_layout_rejects(text, expected):
    with pytest.raises(UsageError) as info:
        parse_layout(text)
    message = str(info.value)
    assert message.startswith(f"layout {text!r}: ") and expected in message and "\n" not in message
    assert info.value.fields == ("layout",)


@pytest.mark.parametrize("kwargs, expected", [
    (dict(kind="NTC", prefix=-1), "prefix must be an integer >= 0, got -1"),
    (dict(kind="NTC", prefix=1.5), "prefix must be an integer >= 0, got 1.5"),
    (dict(kind="NTC", prefix=True), "prefix must be an integer >= 0, got True"),
    (dict(kind="NTC", grid=(0, 4)), r"grid must be \(h, w\), two integers >= 1, got \(0, 4\)"),
    (dict(kind="NTC", grid=(4,)), r"grid must be \(h, w\)"),
    (dict(kind="NTC", grid="4x4"), r"grid must be \(h, w\)"),
    (dict(kind="NHWC", grid=(4, 4)), "only an NTC layout has a prefix and a grid"),
    (dict(kind="NC", prefix=1), "only an NTC layout has a prefix and a grid"),
    (dict(kind="NTHC"), "layout must be one of NCHW, NC, NHWC, NTC"),
])
def test_layout_refuses_what_cannot_be_a_layout(kwargs, expected):
    with pytest.raises(UsageError, match=expected):
        Layout(**kwargs)


def test_a_grid_given_as_a_list_is_a_tuple():
    assert Layout("NTC", prefix=1, grid=[4, 4]) == Layout("NTC", prefix=1, grid=(4, 4))


@pytest.mark.parametrize("declared, expected", [
    (Layout("NTC", prefix=1, grid=(3, 3)), "layer 'blocks' has 17 tokens, which is not 1 prefix tokens and a 3x3 grid"),
    (Layout("NTC", prefix=17), "layer 'blocks' has 17 tokens, which leaves none after 17 prefix tokens"),
    (Layout("NTC", prefix=40, grid=(4, 4)), "layer .blocks. has 17 tokens, which leaves none after 40 prefix tokens"),
    (Layout("NHWC"), r"layer 'blocks' is declared NHWC but its output has shape \(1, 17, 6\)"),
    (Layout("NC"), r"layer 'blocks' is declared NC but its output has shape \(1, 17, 6\)"),
])
def test_a_declared_layout_that_does_not_fit_its_layer_is_refused_by_the_survey(declared, expected):
    """Declared layouts are checked against the layers' real shapes once, when the model is surveyed (before any
    work or file), whether or not the layer is used."""
    with pytest.raises(UsageError, match="^layouts: " + expected) as info:
        model_layouts(Tokens(), (S, S), {"blocks": declared})
    assert info.value.fields == ("layouts",)
    assert model_layouts(Tokens(), (S, S), {"blocks": Layout("NTC", prefix=1, grid=(4, 4))})["blocks"].grid == (4, 4)


def test_wrong_or_unknown_layouts_are_one_line_errors():
    t = torch.zeros(2, 5, 3)
    with pytest.raises(UsageError, match=r"layer 'x' is declared NHWC but its output has shape \(2, 5, 3\)"):
        canonical(t, Layout("NHWC"), "x")
    with pytest.raises(UsageError, match=r"the layout of layer 'x' \(output shape \(2, 5, 3\)\) is unknown: declare"):
        canonical(t, Layout("unknown"), "x")
    with pytest.raises(UsageError, match="has 5 tokens, which is not 0 prefix tokens and a 3x3 grid"):
        canonical(t, Layout("NTC", grid=(3, 3)), "x")
    with pytest.raises(UsageError, match=r"layer 'score' has output shape \(2,\): no channels to read"):
        canonical(torch.zeros(2), Layout("unknown"), "score")
    acts = Activations({"x": t})  # 3-D without a layout: ambiguous, never guessed
    with pytest.raises(UsageError, match="is unknown"):
        O.channel("x", 0)(acts)
    with pytest.raises(UsageError, match="token 17 out of range for layer .blocks. with 17 tokens"):
        O.neuron("blocks", 0, token=9 + 8)(Activations(capture(Tokens(), ["blocks"], pixels()),
                                                       layouts=model_layouts(Tokens(), (S, S))))
    with pytest.raises(UsageError, match="layouts: 'nope' is not a layer of the model"):
        model_layouts(Tokens(), (S, S), {"nope": "NC"})


def test_declared_layouts_win():
    layouts = model_layouts(ChannelsLast(), (S, S), {"mix": Layout("NCHW")})
    assert layouts["mix"] == Layout("NCHW") and layouts["act"] == Layout("NHWC")
    model = ChannelsLast()
    model.layer_layouts = {"act": "NCHW"}  # a model may declare its own
    assert model_layouts(model, (S, S))["act"] == Layout("NCHW")


@pytest.mark.parametrize("name, size, expected", [
    ("resnet18", 64, {"layer4": "NCHW", "avgpool": "NCHW", "fc": "NC", "fc8": "NC"}),
    ("convnext_tiny", 64, {"features.1.0.block.2": "NHWC", "features.1.0.block.5": "NHWC", "features.1.0": "NCHW",
                           "features.7": "NCHW", "classifier": "NC"}),
    ("swin_t", 64, {"features.1.0.attn": "NHWC", "features.1": "NHWC", "permute": "NCHW"}),
    ("timm:vit_tiny_patch16_224", 224, {"patch_embed": "NTC (prefix 0, grid 14x14)",
                                        "blocks.3": "NTC (prefix 1, grid 14x14)",
                                        "blocks.3.attn": "NTC (prefix 1, grid 14x14)",
                                        "blocks.3.mlp.fc1": "NTC (prefix 1, grid 14x14)", "head": "NC"}),
])
def test_inference_on_real_architectures(name, size, expected):
    from dvtoolbox.models.registry import create_model

    torch.manual_seed(0)
    model = create_model(name, weights=None)
    layouts = model_layouts(model, (size, size))
    assert {k: str(layouts[k]) for k in expected} == expected
    assert set(layouts) <= set(named_layers(model))


def test_caffe_and_embedded_models_are_channels_first():
    from dvtoolbox.models.caffe import load_caffe_model
    from tests.models.caffe.helpers import ref_path

    caffe = load_caffe_model(ref_path("tiny.prototxt"), ref_path("tiny.caffemodel"))
    layouts = model_layouts(caffe, (32, 32))
    assert {layouts[k].kind for k in ("conv1", "conv2@relu2", "pool2", "concat", "sum3")} == {"NCHW"}
    assert {layouts[k].kind for k in ("fc1", "fc2", "prob")} == {"NC"}
