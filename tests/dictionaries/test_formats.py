"""Files written by SAELens and Overcomplete themselves (tests/data/dictionaries, make_files.py, README.md there)
give, through load_dictionary, the encoder outputs those packages gave for the same input (expected.npz); plain
safetensors files; and the files that are refused."""

import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from dvtoolbox.dictionaries import load_dictionary, parse_dictionary_binding
from dvtoolbox.errors import UsageError

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "dictionaries")
EXPECTED = np.load(os.path.join(DATA, "expected.npz"))
X = torch.from_numpy(np.load(os.path.join(DATA, "input.npy")))

FILES = {  # name in expected.npz -> (path under DATA, topk given, activation read)
    "saelens_standard": ("saelens_standard", None, "relu"),
    "saelens_standard_layer_norm": ("saelens_standard_layer_norm/cfg.json", None, "relu"),
    "saelens_standard_norm_rescale": ("saelens_standard_norm_rescale/sae_weights.safetensors", None, "relu"),
    "saelens_topk": ("saelens_topk", None, "topk"),
    "saelens_topk_rescaled": ("saelens_topk_rescaled", None, "topk"),
    "saelens_jumprelu": ("saelens_jumprelu", None, "jumprelu"),
    "overcomplete_relu": ("overcomplete_relu.pt", None, "relu"),
    "overcomplete_topk": ("overcomplete_topk.pt", 3, "topk"),
    "overcomplete_jump": ("overcomplete_jump.pt", None, "jumprelu"),
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_encode_equals_the_package_encode(name):
    path, topk, activation = FILES[name]
    dictionary = load_dictionary(os.path.join(DATA, path), topk=topk)
    assert (dictionary.d_in, dictionary.n_latents, dictionary.activation) == (4, 8, activation)
    pre, act = dictionary.encode(X)
    want_pre = EXPECTED[f"{name}/pre"]
    if name == "saelens_topk_rescaled":  # SAELens hooks the pre-activation before the rescale; TopK reads it after
        want_pre = want_pre * dictionary.W_dec.norm(dim=-1).numpy()
    np.testing.assert_allclose(pre.numpy(), want_pre, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(act.numpy(), EXPECTED[f"{name}/act"], rtol=1e-6, atol=1e-6)
    assert (EXPECTED[f"{name}/act"] == 0).any() and (EXPECTED[f"{name}/act"] > 0).any()  # both sides of the rule


def test_the_files_come_from_the_packages_named_in_the_readme():
    assert str(EXPECTED["sae_lens_version"]) == "6.54.12" and str(EXPECTED["overcomplete_version"]) == "0.3.0"
    with open(os.path.join(DATA, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    assert "sae-lens 6.54.12" in readme and "overcomplete 0.3.0" in readme


def test_saelens_options_are_read_from_cfg():
    assert load_dictionary(os.path.join(DATA, "saelens_topk")).k == 3
    assert load_dictionary(os.path.join(DATA, "saelens_topk_rescaled")).rescale_by_decoder_norm
    assert load_dictionary(os.path.join(DATA, "saelens_standard")).subtract_b_dec
    norm_rescale = load_dictionary(os.path.join(DATA, "saelens_standard_norm_rescale"))
    assert norm_rescale.normalisation == "constant_norm_rescale" and not norm_rescale.subtract_b_dec
    assert load_dictionary(os.path.join(DATA, "saelens_standard_layer_norm")).normalisation == "layer_norm"


def plain(tmp_path, tensors, name="d.safetensors"):
    path = str(tmp_path / name)
    save_file(tensors, path)
    return path


def test_plain_safetensors_both_key_conventions(tmp_path):
    rng = np.random.RandomState(0)
    w = torch.from_numpy(rng.randn(4, 6).astype(np.float32))
    b = torch.from_numpy(rng.randn(6).astype(np.float32))
    want = X @ w + b
    a = load_dictionary(plain(tmp_path, {"W_enc": w, "b_enc": b}, "a.safetensors"))
    linear = load_dictionary(plain(tmp_path, {"encoder.weight": w.T.contiguous(), "encoder.bias": b}, "b.safetensors"))
    for d in (a, linear):
        np.testing.assert_allclose(d.encode(X)[0].numpy(), want.numpy(), rtol=1e-6, atol=1e-6)
        assert d.activation == "relu"
    thr = torch.full((6,), 0.3)
    jump = load_dictionary(plain(tmp_path, {"W_enc": w, "b_enc": b, "threshold": thr}, "c.safetensors"))
    assert jump.activation == "jumprelu"
    np.testing.assert_allclose(jump.encode(X)[1].numpy(), (want * (want > 0.3)).numpy(), atol=1e-6)
    assert load_dictionary(plain(tmp_path, {"W_enc": w, "b_enc": b}, "d.safetensors"), topk=2).k == 2


def test_binding_reads_name_layer_path_and_topk():
    name, bound = parse_dictionary_binding(f"oc=blocks.3={os.path.join(DATA, 'overcomplete_topk.pt')},topk=3")
    assert (name, bound.layer, bound.dictionary.activation, bound.dictionary.k) == ("oc", "blocks.3", "topk", 3)


def refused(tmp_path):
    """name -> (make(tmp_path) -> path, message)."""
    return {
        "missing": (lambda: str(tmp_path / "nothing.safetensors"), "no such file or folder"),
        "a pickle of objects": (lambda: _pickle(tmp_path), "refused: it is not a file of tensors"),
        "a whole Overcomplete module": (lambda: os.path.join(DATA, "overcomplete_whole_module.pt"),
                                        "refused: it is not a file of tensors"),
        "not safetensors": (lambda: _text(tmp_path, "x.safetensors"), "not a readable safetensors file"),
        "no encoder keys": (lambda: plain(tmp_path, {"weights": torch.zeros(2, 2)}), "no encoder found"),
        "b_enc of another size": (lambda: plain(tmp_path, {"W_enc": torch.zeros(4, 6), "b_enc": torch.zeros(5)}),
                                  "b_enc must have shape (6,)"),
        "a folder without cfg.json": (lambda: str(tmp_path), "cfg.json is missing"),
        "an unsupported SAELens architecture": (lambda: _saelens(tmp_path, {"architecture": "gated"}),
                                                "SAELens architecture 'gated' is not supported"),
        "covariance whitening": (lambda: _saelens(tmp_path, {"normalize_activations": "covariance_whitening"}),
                                 "needs the whitening statistics"),
        "cfg sizes that are not the weights'": (lambda: _saelens(tmp_path, {"d_sae": 9}),
                                                "cfg.json says d_in, d_sae = (4, 9)"),
        "an Overcomplete MLP encoder": (lambda: _torch(tmp_path, {"encoder.final_block.0.weight": torch.zeros(8, 4),
                                                                  "encoder.final_block.0.bias": torch.zeros(8),
                                                                  "encoder.final_block.1.weight": torch.zeros(8)}),
                                        "only Overcomplete's linear encoder is supported"),
    }


def _pickle(tmp_path):
    path = str(tmp_path / "d.pt")
    with open(path, "wb") as handle:
        pickle.dump({"W_enc": np.zeros((4, 2))}, handle)
    return path


def _text(tmp_path, name):
    (tmp_path / name).write_text("not a dictionary")
    return str(tmp_path / name)


def _torch(tmp_path, tensors):
    path = str(tmp_path / "oc.pt")
    torch.save(tensors, path)
    return path


def _saelens(tmp_path, cfg_change):
    import json
    import shutil
    folder = tmp_path / "sae"
    shutil.copytree(os.path.join(DATA, "saelens_standard"), folder)
    cfg = json.loads((folder / "cfg.json").read_text())
    (folder / "cfg.json").write_text(json.dumps({**cfg, **cfg_change}))
    return str(folder)


REFUSED = sorted(refused(None))


@pytest.mark.parametrize("case", REFUSED)
def test_refused_files_are_one_line(tmp_path, case):
    make, message = refused(tmp_path)[case]
    with pytest.raises(UsageError) as info:
        load_dictionary(make())
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_a_whole_module_is_unpickled_only_with_trust(tmp_path):
    """With trust_model_file the whole Overcomplete module would be unpickled: here overcomplete is not installed,
    so that is a one-line error too, not a traceback."""
    path = os.path.join(DATA, "overcomplete_whole_module.pt")
    with pytest.raises(UsageError, match="give trust_model_file"):
        load_dictionary(path)
    try:
        import overcomplete  # noqa: F401
    except ImportError:
        with pytest.raises(UsageError, match="cannot read it"):
            load_dictionary(path, trust_model_file=True)
    else:
        assert load_dictionary(path, trust_model_file=True).n_latents == 8
