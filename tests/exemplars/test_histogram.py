"""Each unit's activation histogram: the counts against numpy's np.histogram of a brute-force computation of every
image's unit value; the bin edges' rule; merge; the tracker file (version 2, and version 1 still read)."""

import json
import math

import numpy as np
import pytest
import torch

from dvtoolbox.errors import UsageError
from dvtoolbox.exemplars.calibration import calibrate
from dvtoolbox.exemplars.data import ImageList
from dvtoolbox.exemplars.histogram import (HistogramCounter, LayerHistogram, calibrated_edges, edges_from_range,
                                           empty_histogram, histogram_text, merge_histograms)
from dvtoolbox.exemplars.tracker import MaxesTracker, kind_of, load_maxes, merge, save_maxes
from tests.exemplars.test_tracker import N_IMAGES, IntegerNet, canonical_outputs, dataset, layer_reading


def every_value(acts: np.ndarray) -> np.ndarray:
    """(I, U): each image's unit value, brute force: the max over all of a unit's positions (an fc unit: itself)."""
    return acts.reshape(acts.shape[0], acts.shape[1], -1).max(axis=2)


def numpy_histogram(values: np.ndarray, edges: np.ndarray):
    """Per unit: [underflow, np.histogram's bins, overflow], min, max, count, sum of the non-NaN values."""
    counts, minimum, maximum, count, total = [], [], [], [], []
    for unit in range(values.shape[1]):
        v = values[:, unit]
        v = v[~np.isnan(v)]
        e = edges[unit]
        inside, _ = np.histogram(v, e)
        counts.append([int((v < e[0]).sum()), *inside, int((v > e[-1]).sum())])
        minimum.append(v.min() if len(v) else np.inf)
        maximum.append(v.max() if len(v) else -np.inf)
        count.append(len(v))
        total.append(v.astype(np.float64).sum())
    return np.array(counts), np.array(minimum), np.array(maximum), np.array(count), np.array(total)


def assert_histogram(h: LayerHistogram, values: np.ndarray, edges: np.ndarray, exact_sum: bool = True):
    counts, minimum, maximum, count, total = numpy_histogram(values, edges)
    np.testing.assert_array_equal(h.edges, edges)
    np.testing.assert_array_equal(h.counts, counts)
    np.testing.assert_array_equal(h.minimum, minimum)
    np.testing.assert_array_equal(h.maximum, maximum)
    np.testing.assert_array_equal(h.count, count)
    if exact_sum:
        np.testing.assert_array_equal(h.total, total)
    else:
        np.testing.assert_allclose(h.total, total, rtol=1e-12)
    assert h.counts.dtype == np.int64 and h.edges.dtype == np.float32 and h.total.dtype == np.float64


def track(model, reading, x, batch_size, edges, indices=None):
    indices = torch.arange(len(x)) if indices is None else indices
    whole = canonical_outputs(model, reading, x[:1])
    tracker = MaxesTracker({name: (kind_of(reading[name]), whole[name].shape[1]) for name in reading}, 4)
    tracker.start_histograms(edges)
    for start in range(0, len(indices), batch_size):
        chunk = indices[start:start + batch_size]
        tracker.update(canonical_outputs(model, reading, x[chunk]), chunk)
    return tracker.result()


@pytest.fixture(scope="module")
def setup():
    """IntegerNet (integer activations, so sums are exact), its layers in every layout (NCHW, NHWC, tokens on their
    grid and over all tokens, fc) and every image's unit values."""
    model = IntegerNet().eval()
    reading = layer_reading(model)
    x = dataset()
    values = {name: every_value(t.numpy()) for name, t in canonical_outputs(model, reading, x).items()}
    return model, reading, x, values


def calibrated(values, images, bins):
    """The edges of the rule from the first ``images`` images' values."""
    return {name: calibrated_edges(torch.from_numpy(v[:images]), bins) for name, v in values.items()}


def integer_edges(values, bins):
    """Edges at integers, so that integer values fall on edges (the top edge included): from the second smallest
    to the second largest value of each unit (an underflow and an overflow)."""
    edges = {}
    for name, v in values.items():
        rows = []
        for unit in range(v.shape[1]):
            distinct = np.unique(v[:, unit])
            lo, hi = (distinct[1], distinct[-2]) if len(distinct) >= 4 else (distinct[0] - 1, distinct[-1] + 1)
            rows.append(np.linspace(lo, hi, bins + 1) if hi - lo >= bins else lo + np.arange(bins + 1))
        edges[name] = np.array(rows, np.float32)
    return edges


@pytest.mark.parametrize("batch_size", [1, 4, N_IMAGES])
@pytest.mark.parametrize("edges_from", ["calibration of 3 images, 5 bins", "calibration of all, 32 bins",
                                        "integer edges, 3 bins"])
def test_counts_equal_numpys_histogram_of_every_value(setup, batch_size, edges_from):
    model, reading, x, values = setup
    edges = {"calibration of 3 images, 5 bins": lambda: calibrated(values, 3, 5),
             "calibration of all, 32 bins": lambda: calibrated(values, N_IMAGES, 32),
             "integer edges, 3 bins": lambda: integer_edges(values, 3)}[edges_from]()
    result = track(model, reading, x, batch_size, edges)
    for name in reading:
        assert_histogram(result[name].histogram, values[name], edges[name])


def test_the_data_reaches_every_case(setup):
    """Values on inner edges and on the top edge, underflows and overflows: else those rules would go untested."""
    _, _, _, values = setup
    on_inner = on_top = under = over = 0
    for edges in (calibrated(values, 3, 5), integer_edges(values, 3)):
        for name, v in values.items():
            e = edges[name]
            on_inner += int((v[:, :, None] == e[None, :, 1:-1]).sum())
            on_top += int((v == e[None, :, -1]).sum())
            under += int((v < e[None, :, 0]).sum())
            over += int((v > e[None, :, -1]).sum())
    assert on_inner >= 10 and on_top >= 3 and under >= 3 and over >= 3


@pytest.mark.parametrize("split", ["halves", "interleaved"])
def test_merge_of_two_disjoint_parts_is_one_pass(setup, split):
    model, reading, x, values = setup
    edges = calibrated(values, 3, 5)
    every = torch.arange(N_IMAGES)
    first, second = (every[:5], every[5:]) if split == "halves" else (every[::2], every[1::2])
    a = track(model, reading, x, 2, edges, first)
    b = track(model, reading, x, 3, edges, second)
    for merged in (merge(a, b), merge(b, a)):
        for name in reading:
            assert_histogram(merged[name].histogram, values[name], edges[name])


def test_merge_refuses_other_edges_or_a_missing_histogram(setup):
    model, reading, x, values = setup
    a = track(model, reading, x, 3, calibrated(values, 3, 5), torch.arange(5))
    b = track(model, reading, x, 3, calibrated(values, 4, 5), torch.arange(5, N_IMAGES))
    with pytest.raises(ValueError, match="different bin edges"):
        merge_histograms(a["fc"].histogram, b["fc"].histogram)
    b["fc"].histogram = None
    with pytest.raises(ValueError, match="only one of the two"):
        merge(a, b)


def test_nan_is_not_counted_and_the_infinities_are_under_and_overflow():
    counter = HistogramCounter(empty_histogram(np.array([[0, 1, 2], [0, 1, 2]], np.float32)))
    nan, inf = float("nan"), float("inf")
    counter.update(torch.tensor([[nan, 1.0], [-inf, 2.0], [inf, 2.5], [nan, -0.5]]))
    h = counter.result()
    np.testing.assert_array_equal(h.counts, [[1, 0, 0, 1], [1, 0, 2, 1]])
    np.testing.assert_array_equal(h.count, [2, 4])
    np.testing.assert_array_equal(h.minimum, [-inf, -0.5])
    np.testing.assert_array_equal(h.maximum, [inf, 2.5])
    assert math.isnan(h.total[0]) and h.total[1] == 5.0


# ---------------------------------------------------------------------------------------------------- the edges


@pytest.mark.parametrize("lo, hi, bins, expected", [
    (0.0, 10.0, 4, [-6, 0, 6, 12, 18]),              # widened [-2.5, 12.5]: width 3.75 -> 6 (1.5 x 4)
    (-3.0, 1.0, 4, [-4, -2, 0, 2, 4]),               # widened [-4, 2]: width 1.5 spans -4.5 .. 1.5: 2
    (0.1, 0.9, 4, [-0.375, 0, 0.375, 0.75, 1.125]),  # widened [-0.1, 1.1]: width 0.3 -> 0.375 (1.5 x 0.25)
    (0.0, 10.0, 32, list(np.arange(-2.5, 13.51, 0.5))),
    (5.0, 5.0, 4, [4.984375, 4.9921875, 5, 5.0078125, 5.015625]),  # constant: span 5 / 256
    (0.0, 0.0, 4, [-0.75, -0.375, 0, 0.375, 0.75]),  # zero (a dead ReLU): span 1
])
def test_the_edges_rule(lo, hi, bins, expected):
    edges = edges_from_range(np.array([lo]), np.array([hi]), bins)
    np.testing.assert_array_equal(edges[0], np.array(expected, np.float32))
    assert edges.dtype == np.float32


@pytest.mark.parametrize("bins", [2, 3, 7, 32, 1024])
def test_edges_cover_the_widened_range_and_are_exact_in_float32(bins):
    rng = np.random.default_rng(3)
    lo = rng.normal(0, 10, 200) * 10.0 ** rng.integers(-6, 6, 200)
    hi = lo + np.abs(rng.normal(0, 10, 200)) * 10.0 ** rng.integers(-6, 6, 200)
    edges = edges_from_range(lo, hi, bins)
    span = np.maximum(hi - lo, np.maximum(np.abs(lo), np.abs(hi)) / 256)
    assert (edges[:, 0] <= lo - 0.25 * (hi - lo)).all() and (edges[:, -1] >= hi + 0.25 * (hi - lo)).all()
    width = np.diff(edges.astype(np.float64), axis=1)
    assert (width == width[:, :1]).all()                      # uniform, with no float32 rounding
    widened = 1.5 * span
    assert (width[:, 0] * bins <= 1.5 * widened * bins / (bins - 1) * (1 + 1e-9)).all()  # the least width that fits


def test_calibration_ignores_nan_and_infinities_and_an_empty_set():
    values = torch.tensor([[1.0, float("nan")], [float("inf"), float("-inf")], [3.0, float("nan")]])
    edges = calibrated_edges(values, 4)
    np.testing.assert_array_equal(edges, edges_from_range(np.array([1.0, 0.0]), np.array([3.0, 0.0]), 4))
    np.testing.assert_array_equal(calibrated_edges(torch.zeros(0, 2), 4),
                                  edges_from_range(np.zeros(2), np.zeros(2), 4))


def test_calibrate_reads_the_unit_values_of_the_readable_images(setup):
    model, reading, x, values = setup
    batches = [(x[:4], torch.arange(4), ["", "broken", "", ""]), (x[4:6], torch.arange(4, 6), ["bad", "bad"])]
    units = {name: v.shape[1] for name, v in values.items()}
    edges = calibrate(batches, lambda inputs: canonical_outputs(model, reading, inputs), units, 6)
    for name, v in values.items():
        np.testing.assert_array_equal(edges[name], calibrated_edges(torch.from_numpy(v[[0, 2, 3]]), 6))


# ---------------------------------------------------------------------------------------------------- the file


def image_list():
    return ImageList([f"a/{i}.png" for i in range(N_IMAGES)], list(range(N_IMAGES)), "/data",
                     {"kind": "folder", "datadir": "/data"})


def test_version_2_file_round_trip(setup, tmp_path):
    model, reading, x, values = setup
    result = track(model, reading, x, 3, calibrated(values, 3, 5))
    path = tmp_path / "maxes.npz"
    save_maxes(str(path), result, image_list())
    meta, _, loaded = load_maxes(str(path))
    assert meta["version"] == 2 and meta["hist_bins"] == 5
    with np.load(path) as npz:
        assert npz["hist_counts/fc"].shape == (5, 7) and npz["hist_edges/fc"].shape == (5, 6)
        assert npz["hist_min/fc"].dtype == np.float32 and npz["hist_sum/fc"].dtype == np.float64
    for name in result:
        for key in ("edges", "counts", "minimum", "maximum", "count", "total"):
            np.testing.assert_array_equal(getattr(loaded[name].histogram, key), getattr(result[name].histogram, key))


def test_a_file_without_histograms(setup, tmp_path):
    model, reading, x, _ = setup
    whole = canonical_outputs(model, reading, x)
    tracker = MaxesTracker({name: (kind_of(reading[name]), whole[name].shape[1]) for name in reading}, 4)
    tracker.update(whole, torch.arange(N_IMAGES))
    save_maxes(str(tmp_path / "m.npz"), tracker.result(), image_list())
    meta, _, loaded = load_maxes(str(tmp_path / "m.npz"))
    assert meta["version"] == 2 and meta["hist_bins"] == 0
    assert all(m.histogram is None for m in loaded.values())


def test_a_version_1_file_still_loads(tmp_path):
    """Written as version 1 was: no hist_bins, no hist_* arrays."""
    meta = {"format": "dvtoolbox-max-tracker", "version": 1, "n_top": 2,
            "layers": [{"name": "fc8", "kind": "fc", "units": 3}], "images_done": 2,
            "dataset": {"kind": "folder", "datadir": "/d", "root": "/d"}}
    path = tmp_path / "v1.npz"
    np.savez(path, meta=np.array(json.dumps(meta)), paths=np.array(["a.png", "b.png"]),
             labels=np.array([-1, -1], np.int64), **{"values/fc8": np.ones((3, 2), np.float32),
                                                     "images/fc8": np.array([[1, 0]] * 3, np.int64),
                                                     "positions/fc8": np.zeros((3, 2, 2), np.int64)})
    loaded_meta, images, maxes = load_maxes(str(path))
    assert loaded_meta["version"] == 1 and images.paths == ["a.png", "b.png"]
    assert maxes["fc8"].histogram is None and (maxes["fc8"].images[:, 0] == 1).all()


@pytest.mark.parametrize("damage", ["missing counts", "counts shape", "decreasing edges", "count mismatch"])
def test_a_damaged_histogram_is_one_line(setup, tmp_path, damage):
    model, reading, x, values = setup
    result = track(model, reading, x, 3, calibrated(values, 3, 5))
    path = tmp_path / "maxes.npz"
    save_maxes(str(path), result, image_list())
    with np.load(path) as npz:
        arrays = {key: npz[key] for key in npz.files}
    if damage == "missing counts":
        del arrays["hist_counts/conv1"]
    elif damage == "counts shape":
        arrays["hist_counts/conv1"] = arrays["hist_counts/conv1"][:, 1:]
    elif damage == "decreasing edges":
        arrays["hist_edges/conv1"] = arrays["hist_edges/conv1"][:, ::-1].copy()
    else:
        arrays["hist_count/conv1"] = arrays["hist_count/conv1"] + 1
    np.savez(path, **arrays)
    with pytest.raises(UsageError, match="damaged max-tracker file") as info:
        load_maxes(str(path))
    assert "\n" not in str(info.value)


def test_histogram_text():
    h = LayerHistogram(np.array([[0, 0.5, 1.0]], np.float32), np.array([[1, 2, 0, 3]], np.int64),
                       np.array([-1.0], np.float32), np.array([7.0], np.float32), np.array([6]), np.array([12.0]))
    assert histogram_text(h, 0, "fc8").splitlines() == [
        "# histogram layer=fc8 unit=0 bins=2 count=6 min=-1 max=7 mean=2; rows: lower upper count, the first the "
        "underflow, the last the overflow",
        "-inf 0 1", "0 0.5 2", "0.5 1 0", "1 inf 3"]
