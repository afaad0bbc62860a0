"""The streaming top-N tracker against a brute-force numpy computation over every activation; merge; the file."""

import pickle
import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

from dvtoolbox.errors import UsageError
from dvtoolbox.exemplars.data import ImageList
from dvtoolbox.exemplars.tracker import (LayerMaxes, MaxesTracker, kind_of, load_maxes, merge, merge_layer,
                                         save_maxes)
from dvtoolbox.models.capture import LayerCapture, forward_captured
from dvtoolbox.models.layouts import canonical, survey_layers, with_include_prefix

N_IMAGES = 11


class ToNHWC(nn.Module):
    dims = (0, 2, 3, 1)

    def forward(self, x):
        return x.permute(*self.dims)


class Tokens(nn.Module):
    """(N, C, H, W) -> (N, 1 + H*W, C): a sum token, then the patch tokens in row-major order."""

    def forward(self, x):
        patches = x.flatten(2).transpose(1, 2)
        return torch.cat((patches.sum(1, keepdim=True), patches), 1)


class IntegerNet(nn.Module):
    """Integer weights on integer images: every activation is an exact small integer in float32, whatever the
    batch size, so the top N can be compared exactly (ties included)."""

    num_prefix_tokens = 1

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(5)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.nhwc = ToNHWC()
        self.conv2 = nn.Conv2d(4, 3, 3, stride=2, padding=1)
        self.tokens = Tokens()
        self.fc = nn.Linear(3 * 16, 5)
        for module in (self.conv1, self.conv2, self.fc):
            module.weight.data = torch.randint(-1, 2, module.weight.shape, generator=g).float()
            module.bias.data = torch.randint(-2, 3, module.bias.shape, generator=g).float()

    def forward(self, x):
        h = self.relu1(self.conv1(x))
        self.nhwc(h)
        h = self.conv2(h)
        self.tokens(h)
        return self.fc(h.flatten(1))


def dataset():
    """(11, 3, 8, 8) integer images 0..2: two constant images (ties everywhere, first argmax) and duplicates."""
    g = torch.Generator().manual_seed(7)
    x = torch.randint(0, 3, (N_IMAGES, 3, 8, 8), generator=g).float()
    x[1] = 0.0
    x[4] = 1.0
    x[6] = x[2]
    x[9] = x[2]
    x[10] = x[4]
    return x


LAYERS = ["conv1", "nhwc", "conv2", "tokens", "fc"]


def layer_reading(model):
    """{name: layout} for LAYERS, plus the token layer read over all its tokens (no grid) as "tokens_all"."""
    _, layouts = survey_layers(model, (8, 8))
    reading = {name: layouts[name] for name in LAYERS}
    assert reading["nhwc"].kind == "NHWC" and reading["fc"].kind == "NC"
    assert reading["tokens"].kind == "NTC" and reading["tokens"].grid == (4, 4)
    reading["tokens_all"] = with_include_prefix(layouts["tokens"], True)
    return reading


def canonical_outputs(model, reading, x):
    capture = LayerCapture(model, LAYERS)
    with torch.no_grad():
        forward_captured(model, capture, x)
    return {name: canonical(capture.outputs[name.replace("_all", "")], layout, name)
            for name, layout in reading.items()}


def brute_force(acts: np.ndarray, n: int):
    """acts (I, C, ...) every activation. Per unit: each image's max and first argmax (row-major), ranked by
    value descending then image ascending, -inf / -1 / (0, 0) where empty."""
    images, units = acts.shape[:2]
    grid = acts.shape[2:] if acts.ndim == 4 else ((1, acts.shape[2]) if acts.ndim == 3 else (1, 1))
    flat = acts.reshape(images, units, -1)
    best = flat.max(axis=2)
    arg = flat.argmax(axis=2)
    values = np.full((units, n), -np.inf, np.float32)
    idx = np.full((units, n), -1, np.int64)
    pos = np.zeros((units, n, 2), np.int64)
    for u in range(units):
        ranked = sorted(range(images), key=lambda i: (-best[i, u], i))[:n]
        for r, i in enumerate(ranked):
            values[u, r], idx[u, r] = best[i, u], i
            pos[u, r] = np.unravel_index(arg[i, u], grid)
    return values, idx, pos


def track(model, reading, x, batch_size, n, indices=None):
    indices = torch.arange(len(x)) if indices is None else indices
    whole = canonical_outputs(model, reading, x[:1])
    tracker = MaxesTracker({name: (kind_of(reading[name]), whole[name].shape[1]) for name in reading}, n)
    for start in range(0, len(indices), batch_size):
        chunk = indices[start:start + batch_size]
        tracker.update(canonical_outputs(model, reading, x[chunk]), chunk)
    return tracker.result()


@pytest.fixture(scope="module")
def setup():
    model = IntegerNet().eval()
    reading = layer_reading(model)
    x = dataset()
    acts = {name: t.numpy() for name, t in canonical_outputs(model, reading, x).items()}
    return model, reading, x, acts


def assert_same(result: LayerMaxes, expected):
    values, images, positions = expected
    np.testing.assert_array_equal(result.values, values)
    np.testing.assert_array_equal(result.images, images)
    np.testing.assert_array_equal(result.positions, positions)
    assert result.values.dtype == np.float32 and result.images.dtype == np.int64


@pytest.mark.parametrize("n", [4, 14])
@pytest.mark.parametrize("batch_size", [1, 3, N_IMAGES])
def test_top_n_equals_brute_force(setup, batch_size, n):
    model, reading, x, acts = setup
    result = track(model, reading, x, batch_size, n)
    assert [result[name].kind for name in reading] == ["conv", "conv", "conv", "conv", "fc", "tokens"]
    for name in reading:
        assert_same(result[name], brute_force(acts[name], n))


def test_the_data_has_ties_that_the_order_decides(setup):
    """Equal values inside the top 4 and across its boundary (else the tie rule would go untested), and argmax
    ties (a constant image)."""
    _, _, _, acts = setup
    tied_units = 0
    for name, a in acts.items():
        best = a.reshape(a.shape[0], a.shape[1], -1).max(axis=2)
        for u in range(best.shape[1]):
            top = np.sort(best[:, u])[::-1]
            tied_units += top[3] == top[4]
    assert tied_units >= 5
    conv1 = acts["conv1"][1].reshape(4, -1)
    assert ((conv1 == conv1.max(axis=1, keepdims=True)).sum(axis=1) > 1).all()


def test_empty_slots(setup):
    model, reading, x, _ = setup
    result = track(model, reading, x, 3, N_IMAGES + 2)["conv1"]
    assert (result.images[:, -2:] == -1).all() and (result.values[:, -2:] == -np.inf).all()
    assert (result.positions[:, -2:] == 0).all() and (result.images[:, :-2] >= 0).all()


@pytest.mark.parametrize("split", ["halves", "interleaved"])
def test_merge_of_two_disjoint_parts_is_one_pass(setup, split):
    model, reading, x, _ = setup
    every = torch.arange(N_IMAGES)
    first, second = (every[:5], every[5:]) if split == "halves" else (every[::2], every[1::2])
    a = track(model, reading, x, 2, 4, first)
    b = track(model, reading, x, 3, 4, second)
    one = track(model, reading, x, N_IMAGES, 4)
    for merged in (merge(a, b), merge(b, a)):
        for name in reading:
            assert_same(merged[name], (one[name].values, one[name].images, one[name].positions))


def test_merge_refuses_overlapping_parts(setup):
    model, reading, x, _ = setup
    a = track(model, reading, x, 3, 4)
    with pytest.raises(ValueError, match="not disjoint"):
        merge_layer(a["fc"], a["fc"])


def test_nan_and_minus_inf_are_not_recorded():
    tracker = MaxesTracker({"fc": ("fc", 2)}, 3)
    tracker.update({"fc": torch.tensor([[float("nan"), 1.0], [-float("inf"), 1.0], [2.0, 1.0]])},
                   torch.tensor([0, 1, 2]))
    result = tracker.result()["fc"]
    np.testing.assert_array_equal(result.images, [[2, -1, -1], [0, 1, 2]])
    assert tracker.skipped_nan == 1


# ---------------------------------------------------------------------------------------------------- the file


def test_save_and_load_round_trip(setup, tmp_path):
    model, reading, x, _ = setup
    result = track(model, reading, x, 3, 4)
    images = ImageList([f"a/{i}.png" for i in range(N_IMAGES)], list(range(N_IMAGES)), "/data",
                       {"kind": "folder", "datadir": "/data"})
    path = tmp_path / "maxes.pkl"
    save_maxes(str(path), result, images, {"images_done": N_IMAGES, "model": "integer"})
    meta, loaded_images, loaded = load_maxes(str(path))
    assert meta["format"] == "dvtoolbox-max-tracker" and meta["version"] == 2 and meta["n_top"] == 4
    assert meta["images_done"] == N_IMAGES and meta["dataset"] == {"kind": "folder", "datadir": "/data",
                                                                    "root": "/data"}
    assert loaded_images.paths == images.paths and loaded_images.labels == images.labels
    assert list(loaded) == list(result)
    for name in result:
        assert loaded[name].kind == result[name].kind
        assert_same(loaded[name], (result[name].values, result[name].images, result[name].positions))
    assert [p.name for p in tmp_path.iterdir()] == ["maxes.pkl"]  # no temporary file left


@pytest.mark.parametrize("content, message", [
    (b"hello", "is not a max-tracker file"),
    (b"PK\x03\x04broken", "damaged max-tracker file"),
    (b"\x80\x02broken", "is not a NetMaxTracker pickle"),
])
def test_bad_files_are_one_line(tmp_path, content, message):
    path = tmp_path / "maxes.pkl"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=message) as info:
        load_maxes(str(path))
    assert "\n" not in str(info.value)


def test_another_version_is_refused(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, meta=np.array('{"format": "dvtoolbox-max-tracker", "version": 3}'))
    with pytest.raises(UsageError, match="version 3; this dvtoolbox reads versions 1, 2"):
        load_maxes(str(path))


# ---------------------------------------------------------------------------------------------------- the original


@pytest.fixture
def original_classes(monkeypatch):
    """Classes named as the original's ``max_tracker.MaxTracker`` / ``NetMaxTracker``, so that pickle writes
    those names (as the original's Python 2 find_max_acts.py did, with protocol 2)."""
    module = types.ModuleType("max_tracker")
    for name in ("MaxTracker", "NetMaxTracker"):
        cls = type(name, (object,), {"__module__": "max_tracker"})
        setattr(module, name, cls)
    monkeypatch.setitem(sys.modules, "max_tracker", module)
    return module


def original_tracker(module):
    """conv1 (2 units, N 3: one empty slot) and fc8 (2 units), stored as the original does: ascending, the highest
    last, locations -1 where empty; locations (image_idx, image_class, i, j) / (image_idx, image_class). Its empty
    value, -1e99 times a float32 array, overflows to -inf in float32."""
    conv = module.MaxTracker()
    conv.__dict__.update(is_conv=True, n_top=3, max_vals=np.array([[-np.inf, 2.0, 5.0], [1.0, 1.0, 3.0]], np.float32),
                         max_locs=np.array([[[-1, -1, -1, -1], [4, 7, 1, 2], [0, 3, 5, 6]],
                                            [[6, 1, 0, 0], [2, 0, 3, 3], [1, 2, 4, 0]]], np.int64))
    fc = module.MaxTracker()
    fc.__dict__.update(is_conv=False, n_top=3, max_vals=np.array([[0.5, 0.7, 0.9], [-2.0, -1.0, 0.0]], np.float32),
                       max_locs=np.array([[[3, 1], [2, 1], [1, 1]], [[0, 5], [1, 5], [2, 5]]], np.int64))
    net = module.NetMaxTracker()
    net.__dict__.update(layers=["conv1", "fc8"], is_conv=[True, False], init_done=True, n_top=3,
                        initial_val=-1e99, max_trackers={"conv1": conv, "fc8": fc})
    return net


def test_the_originals_pickle_loads(original_classes, tmp_path):
    path = tmp_path / "maxes.pkl"
    path.write_bytes(pickle.dumps(original_tracker(original_classes), protocol=2))
    meta, images, maxes = load_maxes(str(path))
    assert meta["format"] == "original NetMaxTracker" and meta["n_top"] == 3 and len(images) == 0
    assert list(maxes) == ["conv1", "fc8"]
    conv, fc = maxes["conv1"], maxes["fc8"]
    assert conv.kind == "conv" and fc.kind == "fc"
    np.testing.assert_array_equal(conv.values, [[5.0, 2.0, -np.inf], [3.0, 1.0, 1.0]])
    np.testing.assert_array_equal(conv.images, [[0, 4, -1], [1, 2, 6]])
    np.testing.assert_array_equal(conv.positions, [[[5, 6], [1, 2], [0, 0]], [[4, 0], [3, 3], [0, 0]]])
    np.testing.assert_array_equal(fc.values, np.array([[0.9, 0.7, 0.5], [0.0, -1.0, -2.0]], np.float32))
    np.testing.assert_array_equal(fc.images, [[1, 2, 3], [2, 1, 0]])
    assert (fc.positions == 0).all()


def test_a_pickle_naming_anything_else_is_refused(original_classes, tmp_path):
    net = original_tracker(original_classes)
    net.__dict__["extra"] = types.SimpleNamespace()
    path = tmp_path / "maxes.pkl"
    path.write_bytes(pickle.dumps(net, protocol=2))
    with pytest.raises(UsageError) as info:
        load_maxes(str(path))
    message = str(info.value)
    assert "refusing to load the global types.SimpleNamespace" in message and "\n" not in message
