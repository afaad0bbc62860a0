"""InceptionV1: lucent's state-dict keys and shapes, lucid's layer names, a forward equal to lucent's fixed-padding
forward, the download code on a local file:// URL, and the offline error."""

import dataclasses
import os
import urllib.error

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dvtoolbox.errors import UsageError
from dvtoolbox.models import inceptionv1 as inc
from dvtoolbox.models import weights as weights_files
from dvtoolbox.models.capture import layer_shapes
from dvtoolbox.models.redirected_relu import RedirectedReLU
from dvtoolbox.models.registry import create_model, list_models
from dvtoolbox.optvis import FeatureViz, get_image

# lucent's InceptionV1.__init__ (lucent/modelzoo/inceptionv1/InceptionV1.py), transcribed: unit -> (out, in, kernel).
LUCENT_CONVS = {
    "conv2d0": (64, 3, 7), "conv2d1": (64, 64, 1), "conv2d2": (192, 64, 3),
}
for _name, _cin, _c1, _c3b, _c3, _c5b, _c5, _cp in [
        ("mixed3a", 192, 64, 96, 128, 16, 32, 32), ("mixed3b", 256, 128, 128, 192, 32, 96, 64),
        ("mixed4a", 480, 192, 96, 204, 16, 48, 64), ("mixed4b", 508, 160, 112, 224, 24, 64, 64),
        ("mixed4c", 512, 128, 128, 256, 24, 64, 64), ("mixed4d", 512, 112, 144, 288, 32, 64, 64),
        ("mixed4e", 528, 256, 160, 320, 32, 128, 128), ("mixed5a", 832, 256, 160, 320, 48, 128, 128),
        ("mixed5b", 832, 384, 192, 384, 48, 128, 128)]:
    LUCENT_CONVS.update({f"{_name}_1x1": (_c1, _cin, 1), f"{_name}_3x3_bottleneck": (_c3b, _cin, 1),
                         f"{_name}_5x5_bottleneck": (_c5b, _cin, 1), f"{_name}_pool_reduce": (_cp, _cin, 1),
                         f"{_name}_3x3": (_c3, _c3b, 3), f"{_name}_5x5": (_c5, _c5b, 5)})

# lucid's modelzoo InceptionV1 layer list: name -> channels.
LUCID_LAYERS = {"conv2d0": 64, "conv2d1": 64, "conv2d2": 192, "mixed3a": 256, "mixed3b": 480, "mixed4a": 508,
                "mixed4b": 512, "mixed4c": 512, "mixed4d": 528, "mixed4e": 832, "mixed5a": 832, "mixed5b": 1024,
                "softmax2": 1008}


def lucent_keys():
    keys = {}
    for unit, (c_out, c_in, k) in LUCENT_CONVS.items():
        keys[f"{unit}_pre_relu_conv.weight"] = (c_out, c_in, k, k)
        keys[f"{unit}_pre_relu_conv.bias"] = (c_out,)
    keys["softmax2_pre_activation_matmul.weight"] = (1008, 1024)
    keys["softmax2_pre_activation_matmul.bias"] = (1008,)
    return keys


def fake_state_dict(seed=0):
    """Random weights with lucent's keys and shapes (small, so activations stay finite)."""
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=gen) * (0.05 if len(shape) > 1 else 0.01)
            for k, shape in lucent_keys().items()}


@pytest.fixture(scope="module")
def fake_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "inception5h.pth"
    state = fake_state_dict()
    torch.save(state, path)
    return path, state


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("DVTOOLBOX_HOME", str(folder))
    return folder


def test_state_dict_keys_and_shapes_are_lucents():
    model = inc.InceptionV1(redirected_ReLU=False)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == lucent_keys()


def test_lucid_layer_names_and_shapes():
    model = inc.InceptionV1(redirected_ReLU=False)
    shapes = layer_shapes(model, (224, 224))
    for name, channels in LUCID_LAYERS.items():
        assert shapes[name][0] == channels, name
    assert shapes["mixed4a"] == (508, 14, 14) and shapes["mixed5b"] == (1024, 7, 7)
    assert shapes["avgpool0"] == (1024, 1, 1) and shapes["softmax2_pre_activation_matmul"] == (1008,)
    for name in ["maxpool0", "localresponsenorm0", "localresponsenorm1", "maxpool1", "maxpool4", "maxpool10",
                 "mixed4a_3x3_pre_relu_conv", "mixed4a_pool"]:
        assert name in shapes
    order = [n for n in shapes if n in LUCID_LAYERS]
    assert order == list(LUCID_LAYERS)


def lucent_forward(state, x):
    """lucent's InceptionV1.forward with its fixed F.pad calls, on a state dict. The pads are TF "SAME" whenever
    every map size before a stride-2 layer is even (224, 64, 32 ...); the final average is over the whole map
    (lucent's 7 x 7 window, which is the whole map at 224)."""
    def conv(name, t, pad=None):
        if pad is not None:
            t = F.pad(t, pad)
        w, b = state[f"{name}_pre_relu_conv.weight"], state[f"{name}_pre_relu_conv.bias"]
        return F.relu(F.conv2d(t, w, b, stride=2 if name == "conv2d0" else 1))

    def pool(t, pad, stride):
        return F.max_pool2d(F.pad(t, pad, value=float("-inf")), 3, stride)

    def lrn(t):
        return F.local_response_norm(t, size=9, alpha=9.99999974738e-05, beta=0.5, k=1)

    t = lrn(pool(conv("conv2d0", x, (2, 3, 2, 3)), (0, 1, 0, 1), 2))
    t = conv("conv2d2", conv("conv2d1", t), (1, 1, 1, 1))
    t = pool(lrn(t), (0, 1, 0, 1), 2)
    for m in ["mixed3a", "mixed3b", "mixed4a", "mixed4b", "mixed4c", "mixed4d", "mixed4e", "mixed5a", "mixed5b"]:
        t = torch.cat([conv(f"{m}_1x1", t),
                       conv(f"{m}_3x3", conv(f"{m}_3x3_bottleneck", t), (1, 1, 1, 1)),
                       conv(f"{m}_5x5", conv(f"{m}_5x5_bottleneck", t), (2, 2, 2, 2)),
                       conv(f"{m}_pool_reduce", pool(t, (1, 1, 1, 1), 1))], 1)
        if m in ("mixed3b", "mixed4e"):
            t = pool(t, (0, 1, 0, 1), 2)
    t = F.avg_pool2d(t, t.shape[-2:], stride=1).reshape(-1, 1024)
    return F.linear(t, state["softmax2_pre_activation_matmul.weight"], state["softmax2_pre_activation_matmul.bias"])


@pytest.mark.parametrize("redirected, size", [(False, 224), (True, 64)])
def test_forward_equals_lucents(fake_weights, redirected, size):
    _, state = fake_weights
    model = inc.InceptionV1(redirected_ReLU=redirected).eval()
    model.load_state_dict(state)
    x = torch.randn((2, 3, size, size), generator=torch.Generator().manual_seed(1)) * 60.0
    with torch.no_grad():
        got = model(x)
        want = lucent_forward(state, x)
    assert got.shape == (2, 1008)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    relus = [m for n, m in model.named_modules() if n in LUCENT_CONVS]
    assert len(relus) == 57 and all(isinstance(m, RedirectedReLU if redirected else nn.ReLU) for m in relus)


def test_odd_input_size_runs():
    model = inc.InceptionV1(redirected_ReLU=False).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 97, 131)).shape == (1, 1008)


def test_contract_and_labels():
    contract = inc.InceptionV1(redirected_ReLU=False).input_contract
    assert contract.size == (224, 224) and contract.channel_order == "RGB" and contract.mean == (117.0,) * 3
    assert contract.label_layers == ("softmax2_pre_activation_matmul", "softmax2")
    labels = contract.labels
    assert len(labels) == 1008
    # inception5h's order: lucid label index = line of lucent's old_imagenet_labels.txt (1-based).
    assert (labels[0], labels[1], labels[2], labels[449], labels[425], labels[1000]) == \
        ("dummy", "kit fox", "English setter", "tench", "flamingo", "dumbbell")
    assert set(labels[1001:]) == {"dummy"} and len(set(labels[1:1001])) >= 998
    mapping = inc.imagenet_to_inceptionv1()
    assert sorted(mapping) == list(range(1, 1001))
    assert (mapping[0], mapping[130], mapping[999]) == (449, 425, 889)  # tench, flamingo, toilet tissue


def test_pretrained_downloads_once_from_a_local_url(fake_weights, cache, monkeypatch):
    path, state = fake_weights
    monkeypatch.setattr(inc, "INCEPTION5H_URL", path.as_uri())
    model = inc.InceptionV1(pretrained=True, redirected_ReLU=True, progress=False)
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key], value), key
    assert os.listdir(cache) == ["inception5h.pth"]  # no temporary file left

    def no_network(*args, **kwargs):
        raise AssertionError("downloaded again")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    model = inc.InceptionV1(pretrained=True)  # from the cache
    assert torch.equal(model.conv2d0_pre_relu_conv.weight, state["conv2d0_pre_relu_conv.weight"])
    model = create_model("inceptionv1")
    assert isinstance(model.mixed4a_1x1, RedirectedReLU) and not model.training


def test_offline_is_a_one_line_usage_error(cache, monkeypatch):
    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(UsageError) as info:
        inc.InceptionV1(pretrained=True)
    message = str(info.value)
    assert "\n" not in message and "offline?" in message
    assert str(cache / "inception5h.pth") in message and inc.INCEPTION5H_URL in message
    assert not cache.exists() or os.listdir(cache) == []
    with pytest.raises(UsageError, match="by hand|yourself"):
        create_model("inceptionv1")


def test_truncated_or_wrong_hash_download_is_refused(tmp_path, cache):
    small = tmp_path / "small.pth"
    small.write_bytes(b"<html>not found</html>")
    with pytest.raises(UsageError, match="expected at least 1000"):
        weights_files.fetch_weights("w.pth", small.as_uri(), min_bytes=1000, progress=False)
    with pytest.raises(UsageError, match="sha256"):
        weights_files.fetch_weights("w.pth", small.as_uri(), sha256="0" * 64, progress=False)
    assert os.listdir(cache) == []
    digest = weights_files.sha256_of(str(small))
    got = weights_files.fetch_weights("w.pth", small.as_uri(), sha256=digest[:8], progress=False)
    assert got == str(cache / "w.pth") and (cache / "w.pth").read_bytes() == small.read_bytes()


def test_cache_dir_default(monkeypatch):
    monkeypatch.delenv("DVTOOLBOX_HOME", raising=False)
    assert weights_files.cache_dir() == os.path.join(os.path.expanduser("~"), ".cache", "dvtoolbox")


def test_registry_with_a_path_and_random(fake_weights):
    path, state = fake_weights
    assert "inceptionv1" in list_models()
    model = create_model("inceptionv1", weights=str(path), redirected_ReLU=False)
    assert torch.equal(model.softmax2_pre_activation_matmul.bias, state["softmax2_pre_activation_matmul.bias"])
    assert isinstance(model.mixed4a_1x1, nn.ReLU)
    wrong = {k: v for k, v in state.items() if k != "conv2d0_pre_relu_conv.bias"}
    bad = path.parent / "missing_key.pth"
    torch.save(wrong, bad)
    with pytest.raises(UsageError, match="conv2d0_pre_relu_conv.bias"):
        create_model("inceptionv1", weights=str(bad))


def test_featureviz_on_the_readme_objective(fake_weights):
    # The torchlight README's first example, two steps on small images (a 64 px contract keeps it fast).
    _, state = fake_weights
    model = inc.InceptionV1(redirected_ReLU=True).eval()
    model.load_state_dict(state)
    contract = dataclasses.replace(model.input_contract, size=(64, 64))
    fv = FeatureViz(model=model, objective="mixed4a:97", contract=contract)
    images = fv.visualize(lambda: get_image(w=32), thresholds=[2], lr=0.05, transforms=[])
    assert images[0].shape == (1, 32, 32, 3) and len(fv.history) == 2
    assert np.isfinite(fv.history).all()
