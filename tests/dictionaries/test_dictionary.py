"""Dictionary.encode against a numpy restatement of SAELens' rule; one latent equals its column of encode; the
objective and the grammar's DICT#k terms."""

import numpy as np
import pytest
import torch

from dvtoolbox.dictionaries import Dictionary, LayerDictionary
from dvtoolbox.errors import UsageError
from dvtoolbox.models.layouts import Layout
from dvtoolbox.objectives import Activations, create_objective, dictionary_latent, parse_objective

D_IN, N = 5, 7


def random_dictionary(activation="relu", normalisation="none", subtract_b_dec=True, rescale=False, seed=0):
    rng = np.random.RandomState(seed)
    t = lambda *shape: torch.from_numpy(rng.randn(*shape).astype(np.float32))  # noqa: E731
    return Dictionary(W_enc=t(D_IN, N), b_enc=t(N), W_dec=t(N, D_IN), b_dec=t(D_IN), activation=activation,
                      k=3 if activation == "topk" else None,
                      threshold=torch.from_numpy(rng.rand(N).astype(np.float32)) if activation == "jumprelu" else None,
                      subtract_b_dec=subtract_b_dec, normalisation=normalisation, rescale_by_decoder_norm=rescale)


def numpy_encode(d, x):
    """SAELens' encode, restated in float64 numpy."""
    w, b = d.W_enc.double().numpy(), d.b_enc.double().numpy()
    x = x.astype(np.float64)
    if d.normalisation == "constant_norm_rescale":
        x = x * np.sqrt(D_IN) / np.linalg.norm(x, axis=-1, keepdims=True)
    elif d.normalisation == "layer_norm":
        x = x - x.mean(-1, keepdims=True)
        x = x / (x.std(-1, ddof=1, keepdims=True) + 1e-5)
    if d.subtract_b_dec:
        x = x - d.b_dec.double().numpy()
    pre = x @ w + b
    if d.rescale_by_decoder_norm:
        pre = pre * np.linalg.norm(d.W_dec.double().numpy(), axis=-1)
    if d.activation == "relu":
        act = np.maximum(pre, 0)
    elif d.activation == "jumprelu":
        act = np.where(pre > d.threshold.double().numpy(), np.maximum(pre, 0), 0)
    else:
        act = np.zeros_like(pre)
        top = np.argsort(-pre, axis=-1)[..., :d.k]
        np.put_along_axis(act, top, np.maximum(np.take_along_axis(pre, top, -1), 0), -1)
    return pre, act


CASES = [dict(activation="relu"), dict(activation="topk"), dict(activation="jumprelu"),
         dict(activation="relu", normalisation="layer_norm"),
         dict(activation="relu", normalisation="constant_norm_rescale", subtract_b_dec=False),
         dict(activation="topk", rescale=True)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_encode_is_saelens_rule(case):
    d = random_dictionary(**case)
    x = np.random.RandomState(2).randn(3, 4, D_IN).astype(np.float32)
    pre, act = d.encode(torch.from_numpy(x))
    want_pre, want_act = numpy_encode(d, x)
    np.testing.assert_allclose(pre.numpy(), want_pre, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(act.numpy(), want_act, rtol=1e-5, atol=1e-5)
    assert (act.numpy() > 0).sum(-1).max() <= (3 if case["activation"] == "topk" else N)
    for k in range(N):
        np.testing.assert_allclose(d.latent(torch.from_numpy(x), k).numpy(), pre[..., k].numpy(), atol=1e-5)
        np.testing.assert_allclose(d.latent(torch.from_numpy(x), k, pre_activation=False).numpy(),
                                   act[..., k].numpy(), atol=1e-5)


BAD_DICTIONARIES = [
    (dict(b_enc=torch.zeros(N + 1)), "b_enc must have shape (7,)"),
    (dict(W_enc=torch.zeros(D_IN)), "the encoder matrix must be (d_in, n_latents)"),
    (dict(activation="topk", k=0), "topk needs k in [1, 7]"),
    (dict(activation="jumprelu"), "jumprelu needs a threshold vector"),
    (dict(activation="gelu"), "activation must be one of relu, topk, jumprelu"),
    (dict(normalisation="covariance_whitening"), "input normalisation 'covariance_whitening' is not supported"),
    (dict(W_dec=torch.zeros(D_IN, N)), "W_dec must be (n_latents, d_in) = (7, 5)"),
    (dict(subtract_b_dec=True), "subtracting b_dec from the input needs b_dec"),
]


@pytest.mark.parametrize("change, message", BAD_DICTIONARIES, ids=[m for _, m in BAD_DICTIONARIES])
def test_bad_dictionary_is_one_line(change, message):
    kwargs = dict(W_enc=torch.zeros(D_IN, N), b_enc=torch.zeros(N))
    with pytest.raises(UsageError, match=None) as info:
        Dictionary(**{**kwargs, **change})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_objective_is_the_mean_over_positions_of_the_latent_conv_and_tokens():
    d = random_dictionary("jumprelu")
    conv = torch.from_numpy(np.random.RandomState(3).randn(2, D_IN, 3, 3).astype(np.float32))
    vectors = conv.permute(0, 2, 3, 1).numpy()
    pre, act = numpy_encode(d, vectors)
    acts = Activations({"conv": conv})
    assert dictionary_latent("conv", d, 4)(acts).item() == pytest.approx(pre[..., 4].mean(), abs=1e-5)
    assert dictionary_latent("conv", d, 4, pre_activation=False)(acts).item() == pytest.approx(act[..., 4].mean(),
                                                                                               abs=1e-5)
    assert dictionary_latent("conv", d, 4, batch=1)(acts).item() == pytest.approx(pre[1, ..., 4].mean(), abs=1e-5)
    tokens = torch.from_numpy(np.random.RandomState(4).randn(2, 1 + 4, D_IN).astype(np.float32))  # class + 2x2
    acts = Activations({"blk": tokens}, layouts={"blk": Layout("NTC", prefix=1, grid=(2, 2))})
    pre, _ = numpy_encode(d, tokens.numpy())
    assert dictionary_latent("blk", d, 2)(acts).item() == pytest.approx(pre[:, 1:, 2].mean(), abs=1e-5)
    assert dictionary_latent("blk", d, 2, include_prefix=True)(acts).item() == pytest.approx(pre[..., 2].mean(),
                                                                                             abs=1e-5)


def test_grammar_reads_latent_terms_with_the_other_terms():
    d = random_dictionary("topk")
    bound = {"sae": LayerDictionary("conv", d), "oc_2": LayerDictionary("fc", random_dictionary(seed=1))}
    conv = torch.from_numpy(np.random.RandomState(5).randn(2, D_IN, 2, 2).astype(np.float32))
    fc = torch.from_numpy(np.random.RandomState(6).randn(2, D_IN).astype(np.float32))
    acts = Activations({"conv": conv, "fc": fc})
    pre, act = numpy_encode(d, conv.permute(0, 2, 3, 1).numpy())
    pre_fc, _ = numpy_encode(bound["oc_2"].dictionary, fc.numpy())
    objective = parse_objective("sae#1 - 0.5 * sae.act#6@1 + 2 * (oc_2.pre#0 + conv:3)", dictionaries=bound)
    want = (pre[..., 1].mean() - 0.5 * act[1, ..., 6].mean() + 2 * (pre_fc[:, 0].mean() + conv[:, 3].mean().item()))
    assert objective(acts).item() == pytest.approx(want, abs=1e-5)
    assert objective.layers == {"conv", "fc"}
    assert str(parse_objective("sae.act#6", dictionaries=bound)) == "sae.act#6 (conv)"
    assert parse_objective("conv2@relu2:3").layers == {"conv2@relu2"}  # Caffe's taps still read as layers


@pytest.mark.parametrize("text, message", [
    ("sae#3", "unknown dictionary 'sae' in 'sae#3'; dictionaries: none (give --dictionary NAME=LAYER=PATH)"),
    ("other#3", "unknown dictionary 'other'"),
    ("known#7", "latent 7 is out of range"),
    ("known.post#1", "cannot read"),
    ("known#", "cannot read"),
])
def test_bad_latent_terms(text, message):
    bound = {"known": LayerDictionary("conv", random_dictionary())} if "known" in text or "other" in text else {}
    with pytest.raises(UsageError) as info:
        create_objective(text, dictionaries=bound)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_layer_with_other_channel_count_is_one_line_at_the_first_forward():
    objective = dictionary_latent("conv", random_dictionary(), 0)
    with pytest.raises(UsageError, match=r"reads 5 channels, but its layer has 3"):
        objective(Activations({"conv": torch.zeros(1, 3, 2, 2)}))
