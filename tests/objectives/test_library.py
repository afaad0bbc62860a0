"""Objectives: exact values on hand-made activations and on the tiny fixed-weight model, arithmetic, batch=,
strings, errors."""

import numpy as np
import pytest
import torch

from dvtoolbox.errors import UsageError
from dvtoolbox.models.capture import LayerCapture
from dvtoolbox import objectives as obj
from dvtoolbox.models.pixel_space import to_model_input
from dvtoolbox.objectives import Activations, Objective, create_objective
from tests.conftest import make_tiny, tiny_weights

pytestmark = pytest.mark.filterwarnings("error")


@pytest.fixture
def acts():
    """a: (2, 3, 2, 2) = 0..23; logits: (2, 5) = 0..9; input: (2, 3, 3, 4) fixed values in [0, 1]."""
    rng = np.random.RandomState(5)
    return Activations({
        "a": torch.arange(24, dtype=torch.float32).reshape(2, 3, 2, 2),
        "logits": torch.arange(10, dtype=torch.float32).reshape(2, 5),
        "input": torch.from_numpy(rng.rand(2, 3, 3, 4).astype(np.float32)),
    }, labels=[f"c{i}" for i in range(5)])


def value(objective, acts):
    out = objective(acts)
    assert out.dim() == 0
    return out.item()


# -------------------------------------------------------------------------------------------- hand values


def test_channel(acts):
    assert value(obj.channel("a", 1), acts) == 11.5          # (4+5+6+7 + 16+17+18+19) / 8
    assert value(obj.channel("a", 1, batch=0), acts) == 5.5
    assert value(obj.channel("a", 1, batch=1), acts) == 17.5
    assert value(obj.channel("a", 1, batch=[1, 0]), acts) == 11.5
    assert value(obj.channel("logits", 3), acts) == 5.5       # (3 + 8) / 2


def test_neuron(acts):
    assert value(obj.neuron("a", 2, x=1, y=0), acts) == 15.0   # a[:, 2, 0, 1] = 9, 21
    assert value(obj.neuron("a", 2), acts) == 17.0             # centre (1, 1) of 2x2: 11, 23
    assert value(obj.neuron("a", 0, x=0, y=1, batch=1), acts) == 14.0
    assert value(obj.neuron("logits", 4), acts) == 6.5         # (4 + 9) / 2, no position on (N, C)


def test_layer_is_mean_of_squares(acts):
    assert value(obj.layer("a"), acts) == pytest.approx(4324 / 24)  # sum k^2, k < 24 = 4324
    assert value(obj.deepdream("a", batch=0), acts) == pytest.approx(sum(k * k for k in range(12)) / 12)


def test_direction(acts):
    assert value(obj.direction("a", [1.0, 0.0, -1.0]), acts) == -8.0   # a[:, 0] - a[:, 2] = -8 everywhere
    assert value(obj.direction("a", np.array([0.0, 2.0, 0.0]), batch=1), acts) == 2 * 17.5
    assert value(obj.direction_neuron("a", [1.0, 1.0, 1.0], x=0, y=0), acts) == (0 + 4 + 8 + 12 + 16 + 20) / 2


def test_direction_cossim_pow(acts):
    t = acts["a"].numpy().astype(np.float64)
    vec = np.array([1.0, 2.0, 3.0])
    dot = np.einsum("nchw,c->nhw", t, vec)
    cos = dot / ((1e-4 + np.sqrt((t ** 2).sum(1))) * (1e-4 + np.linalg.norm(vec)))
    expected = (dot * np.maximum(cos, 0.1) ** 2).mean()
    assert value(obj.direction("a", vec, cossim_pow=2), acts) == pytest.approx(expected, rel=1e-6)


def test_channel_interpolate(acts):
    # element 0: mean a[0, 0] = 1.5 with weight 1; element 1: mean a[1, 2] = 21.5 with weight 1
    assert value(obj.channel_interpolate("a", 0, "a", 2), acts) == 23.0
    three = Activations({"a": torch.arange(36, dtype=torch.float32).reshape(3, 3, 2, 2)})
    # weights 0, 0.5, 1: 1.5 + 0.5 * (mean a[1,0]=13.5 + mean a[1,2]=21.5) + mean a[2,2]=33.5
    assert value(obj.channel_interpolate("a", 0, "a", 2), three) == 1.5 + 0.5 * (13.5 + 21.5) + 33.5
    with pytest.raises(UsageError, match="at least 2"):
        obj.channel_interpolate("a", 0, "a", 2, batch=0)(acts)


def test_alignment(acts):
    assert value(obj.alignment("a"), acts) == 72.0   # mean((a0 - a1)^2) = 144, / 2 for d = 1
    five = Activations({"a": torch.arange(5, dtype=torch.float32).reshape(5, 1, 1, 1)})
    expected = sum(sum(d * d for _ in range(5 - d)) / 3.0 ** d for d in (1, 2, 3, 4))
    assert value(obj.alignment("a", decay_ratio=3), five) == pytest.approx(expected)


def test_diversity_against_numpy(acts):
    rng = np.random.RandomState(1)
    t = rng.randn(3, 4, 2, 3).astype(np.float32)
    flat = t.reshape(3, 4, -1).astype(np.float64)
    grams = np.stack([f @ f.T for f in flat]).reshape(3, -1)
    grams /= np.sqrt((grams ** 2).sum(1, keepdims=True))
    expected = sum(grams[i] @ grams[j] for i in range(3) for j in range(3) if i != j) / 3
    assert value(obj.diversity("t"), Activations({"t": torch.from_numpy(t)})) == pytest.approx(expected, rel=1e-5)
    same = Activations({"t": torch.from_numpy(np.repeat(t[:1], 2, axis=0))})
    assert value(obj.diversity("t"), same) == pytest.approx(1.0, rel=1e-6)  # two identical images: cos = 1 each way, / 2


def test_class_logit(acts):
    assert value(obj.class_logit("logits", 3), acts) == 5.5
    assert value(obj.class_logit("logits", "c4", batch=1), acts) == 9.0
    with pytest.raises(UsageError, match="unknown class name 'dog'"):
        obj.class_logit("logits", "dog")(acts)


def test_penalties(acts):
    a = acts["a"]
    assert value(obj.L1("a", constant=1), acts) == 254.0                 # 1 + (0 + 1 + ... + 22)
    assert value(obj.L2("a"), acts) == pytest.approx(np.sqrt(4324 + 1e-6))
    assert value(obj.total_variation("a"), acts) == 36.0                 # 6 maps x (2 * |2| + 2 * |1|)
    x = acts["input"].numpy().astype(np.float64)
    tv = np.abs(np.diff(x, axis=2)).sum() + np.abs(np.diff(x, axis=3)).sum()
    assert value(obj.total_variation(), acts) == pytest.approx(tv, rel=1e-6)
    assert value(obj.L1(), acts) == pytest.approx(np.abs(x).sum(), rel=1e-6)
    assert value(obj.L1("a", batch=1), acts) == float(a[1].sum())


def blur3_numpy(x):
    """lucid's 3x3 blur by explicit loops: weights 1 centre, 0.5 around, normalised over existing pixels."""
    n, c, h, w = x.shape
    out = np.zeros_like(x)
    for i in range(h):
        for j in range(w):
            num, den = 0.0, 0.0
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    ii, jj = i + di, j + dj
                    if 0 <= ii < h and 0 <= jj < w:
                        wt = 1.0 if di == dj == 0 else 0.5
                        num, den = num + wt * x[:, :, ii, jj], den + wt
            out[:, :, i, j] = num / den
    return out


def test_blur_input_each_step_value_and_gradient(acts):
    x = acts["input"].numpy().astype(np.float64)
    blurred = blur3_numpy(x)
    assert obj.blur3(acts["input"]).numpy() == pytest.approx(blurred, abs=1e-6)
    assert value(obj.blur_input_each_step(), acts) == pytest.approx(0.5 * ((x - blurred) ** 2).sum(), rel=1e-5)
    # the gradient is x - blur(x) (blur under stop-gradient): a step of size k on -objective gives
    # (1 - k) x + k blur(x)
    image = acts["input"].clone().requires_grad_(True)
    obj.blur_input_each_step()(Activations({"input": image})).backward()
    assert image.grad.numpy() == pytest.approx(x - blurred, abs=1e-6)


# -------------------------------------------------------------------------------------------- arithmetic


def test_arithmetic(acts):
    ch, ch1 = obj.channel("a", 1), obj.channel("a", 1, batch=1)
    assert value(2 * ch - ch1 / 4 + 1, acts) == 23 - 4.375 + 1
    assert value(ch * 2, acts) == 23.0
    assert value(-ch, acts) == -11.5
    assert value(3 - ch, acts) == -8.5
    assert value(ch - 1, acts) == 10.5
    assert value(1 + ch, acts) == 12.5
    assert value(ch - ch1, acts) == -6.0
    assert value(sum([ch, ch1, obj.channel("a", 0)]), acts) == 11.5 + 17.5 + 7.5  # channel 0: (0+1+2+3 + 12+13+14+15) / 8
    assert value(Objective.sum([ch, ch1]), acts) == 29.0
    assert sum([ch]) is ch


def test_arithmetic_rejects_objective_products(acts):
    ch = obj.channel("a", 1)
    with pytest.raises(TypeError, match="only be multiplied by a number, got Objective"):
        ch * ch
    with pytest.raises(TypeError, match="only be divided by a number, got str"):
        ch / "2"
    with pytest.raises(ZeroDivisionError):
        ch / 0


def test_names_descriptions_and_layers():
    combo = obj.channel("a", 1) - 0.5 * obj.total_variation() + obj.neuron("b.c", 2, x=1, batch=0)
    assert str(combo) == "((channel('a', 1) - 0.5 * total_variation()) + neuron('b.c', 2, x=1, batch=0))"
    assert combo.layers == {"a", "input", "b.c"}
    assert obj.channel_interpolate("a", 0, "b", 1).layers == {"a", "b"}
    assert obj.blur_input_each_step().layers == {"input"}
    assert obj.channel.__name__ == "channel" and "Mean activation" in obj.channel.__doc__
    custom = create_objective(lambda acts: acts["a"].sum())
    assert custom.layers is None and (custom + obj.channel("a", 0)).layers is None


def test_batch_errors(acts):
    with pytest.raises(UsageError, match=r"batch must be an index .* in \[0, 2\), got 2"):
        obj.channel("a", 1, batch=2)(acts)
    with pytest.raises(UsageError, match="channel 3 out of range for layer 'a'"):
        obj.channel("a", 3)(acts)
    with pytest.raises(UsageError, match="outside layer 'a'"):
        obj.neuron("a", 0, x=2)(acts)
    with pytest.raises(UsageError, match="not captured; captured: a, logits, input"):
        obj.channel("zz", 0)(acts)


# -------------------------------------------------------------------------------------------- strings


def test_create_objective_strings(acts):
    assert value(create_objective("a:1"), acts) == 11.5
    assert value(create_objective("a:1", batch=1), acts) == 17.5
    assert value(create_objective("a:2:0:1"), acts) == 15.0   # layer:channel:y:x
    assert str(create_objective("_blocks.10:97")) == "channel('_blocks.10', 97)"
    ch = obj.channel("a", 0)
    assert create_objective(ch) is ch
    for bad in ("a", "a:1:2:3:4", "a:x", ":3", "a:-1"):
        with pytest.raises(UsageError, match="objective"):
            create_objective(bad)


def test_create_objective_checks_layers_on_a_model():
    model = make_tiny()
    assert create_objective("conv1:1", model=model).layers == {"conv1"}
    with pytest.raises(UsageError, match="unknown layer 'conv9'; valid layers: conv1, relu1, fc8, prob"):
        create_objective("conv9:1", model=model)


# -------------------------------------------------------------------------------------------- tiny model


def conv1_numpy(x):
    """conv1 of the tiny model on x / 64 (x (1, 3, 8, 8) float64, pixel space), zero padding 1."""
    w = tiny_weights()
    cw, cb = w["conv1.weight"].astype(np.float64), w["conv1.bias"].astype(np.float64)
    xp = np.pad(x[0] / 64.0, ((0, 0), (1, 1), (1, 1)))
    out = np.zeros((4, 8, 8))
    for o in range(4):
        for i in range(8):
            for j in range(8):
                out[o, i, j] = cb[o] + (cw[o] * xp[:, i:i + 3, j:j + 3]).sum()
    return out


def test_objectives_on_the_tiny_model_match_numpy():
    model = make_tiny()
    image = torch.from_numpy(np.random.RandomState(7).rand(1, 3, 8, 8).astype(np.float32))
    x = to_model_input(image, model.input_contract)
    with LayerCapture(model, ["conv1", "relu1", "fc8"]) as cap:
        model(x)
    acts = Activations({**cap.outputs, "input": image}, model.input_contract.labels)

    x_np = image.numpy().astype(np.float64) * 255 - np.array([120.0, 110.0, 100.0])[None, :, None, None]
    conv = conv1_numpy(x_np)
    relu = np.maximum(conv, 0)
    w = tiny_weights()
    logits = w["fc8.weight"].astype(np.float64) @ relu.reshape(-1) + w["fc8.bias"]

    assert value(obj.channel("conv1", 2), acts) == pytest.approx(conv[2].mean(), abs=1e-5)
    assert value(obj.neuron("relu1", 1, x=3, y=6), acts) == pytest.approx(relu[1, 6, 3], abs=1e-5)
    assert value(obj.layer("relu1"), acts) == pytest.approx((relu ** 2).mean(), rel=1e-5)
    assert value(obj.class_logit("fc8", "class2"), acts) == pytest.approx(logits[2], abs=1e-5)
    assert value(create_objective("conv1:0:4:4") - 0.5 * obj.channel("conv1", 3), acts) == pytest.approx(
        conv[0, 4, 4] - 0.5 * conv[3].mean(), abs=1e-5)
