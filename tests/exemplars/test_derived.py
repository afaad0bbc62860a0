"""Derived units (sums of channels, directions): the grammar's linear forms, the top N against a brute-force numpy
computation on an integer net (exact, ties included), and backprop / deconv from a seed against linearity and a
numpy restatement."""

import numpy as np
import pytest
import torch

from dvtoolbox.errors import UsageError
from dvtoolbox.exemplars.derived import (UnitDefinition, canonical_outputs as derived_outputs, group_gradient,
                                         parse_unit, plan_derived)
from dvtoolbox.exemplars.patches import unit_input_gradient
from dvtoolbox.exemplars.tracker import MaxesTracker
from dvtoolbox.models.pixel_space import InputContract
from dvtoolbox.objectives.expression import NotLinear, linear_terms
from tests.exemplars.test_patches import TinyReLUNet, fixed_weights, np_conv, np_conv_backward, np_pool_switches
from tests.exemplars.test_tracker import IntegerNet, brute_force, dataset

# ---------------------------------------------------------------------------------------------------- the grammar


@pytest.mark.parametrize("text, terms", [
    ("fc8:130", {("fc8", 130, ()): 1.0}),
    ("fc8:130 + 0.5 * fc8:131", {("fc8", 130, ()): 1.0, ("fc8", 131, ()): 0.5}),
    ("-(conv1:2 - 2 * conv1:3) / 4", {("conv1", 2, ()): -0.25, ("conv1", 3, ()): 0.5}),
    ("conv1:0:3:4 + conv1:0 + tok:1:5 - conv1:0", {("conv1", 0, (3, 4)): 1.0, ("conv1", 0, ()): 0.0,
                                                   ("tok", 1, (5,)): 1.0}),
    ("conv2@relu2:3 * 2", {("conv2@relu2", 3, ()): 2.0}),
])
def test_linear_terms_read_the_grammar(text, terms):
    assert linear_terms(text) == terms


@pytest.mark.parametrize("text, says", [
    ("fc8:1 * fc8:2", "product of two terms"),
    ("fc8:1 + 3", "constant"),
    ("3 - fc8:1", "constant"),
    ("1 / fc8:1", "dividing by a term"),
    ("fc8:1 / (fc8:2 + fc8:3)", "dividing by a term"),
    ("fc8:1@0", "@batch"),
    ("2 * 3", "number alone"),
    ("", "empty"),
])
def test_linear_terms_refuse_what_is_not_linear(text, says):
    with pytest.raises(NotLinear, match=says):
        linear_terms(text)


def test_parse_unit_drops_cancelled_terms_and_refuses_nothing_left():
    assert parse_unit("s=a:1 + a:2 - a:1").terms == {("a", 2, ()): 1.0}
    with pytest.raises(UsageError, match="cancel"):
        parse_unit("s=a:1 - a:1")


# ---------------------------------------------------------------------------------------------------- the top N

N_TOP = 4


@pytest.fixture(scope="module")
def integer_net():
    """tests.exemplars.test_tracker's IntegerNet: every activation an exact small integer; conv1 NCHW (4, 8, 8),
    nhwc NHWC (4, 8, 8), tokens NTC (1 + 16 tokens, 4 x 4 grid, 3 features), fc NC (5)."""
    model = IntegerNet().eval()
    model.input_contract = InputContract(size=(8, 8), channel_order="RGB", mean=(0.0, 0.0, 0.0))
    return model


def directions(name, layer, matrix):
    return UnitDefinition(name, "directions", f"{layer}:m.npy", layer=layer, matrix=np.asarray(matrix, np.float32),
                          file="m.npy", sha256="0" * 64)


def track_groups(model, definitions, x, batch_size, include_prefix=False):
    """The tracker's result for derived groups over the images x, fed batch by batch as find_max_acts does."""
    groups, reads = plan_derived(model, definitions, {}, include_prefix)
    tracker = MaxesTracker({name: (g.kind, g.units) for name, g in groups.items()}, N_TOP)
    for start in range(0, len(x), batch_size):
        outputs = derived_outputs(model, {layer: r.layout for layer, r in reads.items()}, x[start:start + batch_size])
        tracker.update({name: g.values(outputs) for name, g in groups.items()},
                       torch.arange(start, min(start + batch_size, len(x))))
    return groups, tracker.result()


def all_acts(model, layer, x, include_prefix=False):
    """Every activation of ``layer`` (I, C, ...) as float64, read through the model's layout."""
    _, reads = plan_derived(model, [UnitDefinition("probe", "unit", f"{layer}:0", terms={(layer, 0, ()): 1.0})],
                                 {}, include_prefix)
    return derived_outputs(model, {layer: reads[layer].layout}, x)[layer].double().numpy()


def assert_equal_top(result, expected):
    values, images, positions = expected
    np.testing.assert_array_equal(result.values, values.astype(np.float32))
    np.testing.assert_array_equal(result.images, images)
    np.testing.assert_array_equal(result.positions, positions)


@pytest.mark.parametrize("layer, include_prefix, kind", [("conv1", False, "conv"), ("nhwc", False, "conv"),
                                                        ("tokens", False, "conv"), ("tokens", True, "tokens"),
                                                        ("fc", False, "fc")])
@pytest.mark.parametrize("batch_size", [1, 4, 11])
def test_directions_equal_brute_force(integer_net, layer, include_prefix, kind, batch_size):
    """K directions with small integer entries: every dot product is an exact integer, so the top N (values, images,
    positions; ties by image order, the duplicate and constant images of the dataset) compares exactly."""
    x = dataset()
    acts = all_acts(integer_net, layer, x, include_prefix)
    matrix = np.random.default_rng(3).integers(-2, 3, (3, acts.shape[1])).astype(np.float32)
    matrix[2] = 0
    matrix[2, 0] = 1  # a direction that is one channel: equal to the channel's own top N
    groups, result = track_groups(integer_net, [directions("d", layer, matrix)], x, batch_size, include_prefix)
    assert groups["d"].kind == kind and result["d"].kind == kind
    projected = np.einsum("kc,ic...->ik...", matrix.astype(np.float64), acts)
    assert_equal_top(result["d"], brute_force(projected, N_TOP))
    channel0 = brute_force(acts[:, :1], N_TOP)  # the row that is channel 0: the channel's own top N
    for got, expected in zip((result["d"].values, result["d"].images, result["d"].positions), channel0):
        np.testing.assert_array_equal(got[2], expected[0])


def test_a_two_channel_sum_is_the_equivalent_direction(integer_net):
    x = dataset()
    matrix = np.zeros((1, 4), np.float32)
    matrix[0, 1], matrix[0, 3] = 2.0, -1.0
    groups, result = track_groups(integer_net, [parse_unit("s=2 * conv1:1 - conv1:3"),
                                                directions("d", "conv1", matrix)], x, 3)
    assert groups["s"].kind == "conv" and groups["s"].definition["mode"] == "virtual_channel"
    np.testing.assert_array_equal(groups["s"].weights, matrix)
    for key in ("values", "images", "positions"):
        np.testing.assert_array_equal(getattr(result["s"], key), getattr(result["d"], key))
    acts = all_acts(integer_net, "conv1", x)
    assert_equal_top(result["s"], brute_force(2 * acts[:, 1:2] - acts[:, 3:4], N_TOP))


def test_a_multi_layer_sum_is_one_value_per_image(integer_net):
    """conv1:1 (its max over positions) + 0.5 * fc:2 - nhwc:0:3:5 (one position) + 2 * tokens:2:7 (token 7 of 1 +
    16: patch 6, row 1 column 2): kind fc, position (0, 0)."""
    x = dataset()
    groups, result = track_groups(integer_net, [parse_unit("m=conv1:1 + 0.5 * fc:2 - nhwc:0:3:5 + 2 * tokens:2:7")],
                                  x, 4)
    assert groups["m"].kind == "fc" and groups["m"].definition["mode"] == "per_image"
    conv1, fc = all_acts(integer_net, "conv1", x), all_acts(integer_net, "fc", x)
    nhwc, tokens = all_acts(integer_net, "nhwc", x), all_acts(integer_net, "tokens", x)
    per_image = (conv1[:, 1].reshape(len(x), -1).max(1) + 0.5 * fc[:, 2] - nhwc[:, 0, 3, 5] + 2 * tokens[:, 2, 1, 2])
    assert_equal_top(result["m"], brute_force(per_image[:, None], N_TOP))
    assert (result["m"].positions == 0).all()


@pytest.mark.parametrize("definition, says", [
    (lambda: parse_unit("conv1=fc:1"), "is a layer of the model"),
    (lambda: directions("fc", "conv1", np.ones((1, 4))), "is a layer of the model"),
    (lambda: directions("d", "conv1", np.ones((2, 5))), "5 columns"),
    (lambda: parse_unit("s=fc:5"), "channel 5 is out of range"),
    (lambda: parse_unit("s=conv1:0:8:0"), "not on layer 'conv1'"),
    (lambda: parse_unit("s=fc:0:0:0"), "it has none"),
    (lambda: parse_unit("s=conv1:0:3"), "needs a token layer"),
    (lambda: parse_unit("s=tokens:0:0"), "not a patch token"),
    (lambda: parse_unit("s=nope:1"), "is not a layer"),
])
def test_definitions_that_do_not_fit_the_model_are_refused(integer_net, definition, says):
    with pytest.raises(UsageError, match=says):
        plan_derived(integer_net, [definition()], {}, False)


def test_the_same_name_twice_is_refused(integer_net):
    with pytest.raises(UsageError, match="twice"):
        plan_derived(integer_net, [parse_unit("s=fc:1"), parse_unit("s=fc:2")], {}, False)


# ---------------------------------------------------------------------------------------------------- gradients


@pytest.fixture
def relu_net():
    """test_patches' TinyReLUNet: conv (3 -> 4, 3x3 pad 1), ReLU, max-pool 2x2, fc (64 -> 5); 8 x 8 inputs."""
    net = TinyReLUNet(fixed_weights()).eval()
    net.input_contract = InputContract(size=(8, 8), channel_order="RGB", mean=(0.0, 0.0, 0.0))
    return net


def np_seeded_gradient(x, wts, relu_seed, fc_seed, deconv):
    """The input gradient of <relu_seed, relu output (4, 8, 8)> + <fc_seed, fc output (5,)> (numpy)."""
    pre = np_conv(x, wts["w1"], wts["b1"])
    _pooled, switch = np_pool_switches(np.maximum(pre, 0))
    g_pool = (fc_seed @ wts["w2"]).reshape(4, 4, 4)
    g_relu_out = np.repeat(np.repeat(g_pool, 2, 1), 2, 2) * switch + relu_seed
    g_pre = np.maximum(g_relu_out, 0) if deconv else g_relu_out * (pre > 0)
    return np_conv_backward(g_pre, wts["w1"])


MATRIX = np.array([[1.0, -0.5, 2.0, 0.25], [0.0, 1.0, 0.0, -1.0]], np.float32)


@pytest.mark.parametrize("unit, yx", [(0, (1, 4)), (1, (3, 5)), (0, (7, 0))])
@pytest.mark.parametrize("deconv", [False, True])
def test_direction_gradient_equals_the_numpy_restatement(relu_net, unit, yx, deconv):
    wts = fixed_weights()
    x = np.random.default_rng(1).normal(size=(3, 8, 8))
    groups, _ = plan_derived(relu_net, [directions("d", "relu", MATRIX)], {}, False)
    got, value = group_gradient(relu_net, groups["d"], torch.tensor(x[None], dtype=torch.float32), unit, yx, deconv)
    seed = np.zeros((4, 8, 8))
    seed[:, yx[0], yx[1]] = MATRIX[unit]
    expected = np_seeded_gradient(x, wts, seed, np.zeros(5), deconv)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    relu = np.maximum(np_conv(x, wts["w1"], wts["b1"]), 0)
    assert value == pytest.approx(float(MATRIX[unit] @ relu[:, yx[0], yx[1]]), rel=1e-5, abs=1e-5)
    assert np.abs(expected).max() > 0


@pytest.mark.parametrize("layer, yx", [("relu", (2, 6)), ("fc", (0, 0))])
def test_direction_backprop_is_the_weighted_sum_of_the_channels_backprops(relu_net, layer, yx):
    """Backprop is linear in its seed: the direction's image is sum_c w_c * (channel c's one-hot image)."""
    x = torch.tensor(np.random.default_rng(4).normal(size=(1, 3, 8, 8)), dtype=torch.float32)
    weights = np.random.default_rng(5).normal(size=(1, 4 if layer == "relu" else 5)).astype(np.float32)
    groups, _ = plan_derived(relu_net, [directions("d", layer, weights)], {}, False)
    got, value = group_gradient(relu_net, groups["d"], x, 0, yx, deconv=False)
    summed, total = np.zeros((3, 8, 8)), 0.0
    for c, w in enumerate(weights[0]):
        grad, v = unit_input_gradient(relu_net, x, layer, (c,) + yx)
        summed += w * grad
        total += w * v
    np.testing.assert_allclose(got, summed, rtol=1e-5, atol=1e-5 * np.abs(summed).max())
    assert value == pytest.approx(total, rel=1e-5)


def test_per_image_sum_gradient_seeds_each_term_at_its_position(relu_net):
    """relu:2 (at its argmax in this image) + 2 * fc:3 - relu:1:4:0: the sum of the terms' one-hot backprops, and
    the numpy restatement."""
    x_np = np.random.default_rng(6).normal(size=(3, 8, 8))
    x = torch.tensor(x_np[None], dtype=torch.float32)
    groups, _ = plan_derived(relu_net, [parse_unit("m=relu:2 + 2 * fc:3 - relu:1:4:0")], {}, False)
    got, value = group_gradient(relu_net, groups["m"], x, 0, (0, 0), deconv=False)
    wts = fixed_weights()
    relu = np.maximum(np_conv(x_np, wts["w1"], wts["b1"]), 0)
    arg = np.unravel_index(relu[2].argmax(), (8, 8))
    seed = np.zeros((4, 8, 8))
    seed[(2,) + arg] += 1
    seed[1, 4, 0] -= 1
    fc_seed = np.zeros(5)
    fc_seed[3] = 2
    expected = np_seeded_gradient(x_np, wts, seed, fc_seed, False)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    a, va = unit_input_gradient(relu_net, x, "relu", (2,) + tuple(int(i) for i in arg))
    b, vb = unit_input_gradient(relu_net, x, "fc", (3, 0, 0))
    c, vc = unit_input_gradient(relu_net, x, "relu", (1, 4, 0))
    np.testing.assert_allclose(got, a + 2 * b - c, rtol=1e-5, atol=1e-6)
    assert value == pytest.approx(va + 2 * vb - vc, rel=1e-5)
