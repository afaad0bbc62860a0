"""recipes_table.py: the spread cells, the transfer per held-out model from a run's score records, the refusal of
runs over different units; naturalness.py's colour and slope-range measures against numpy."""

import json
import os
import sys

import numpy as np
import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import recipes_table  # noqa: E402

from dvtoolbox.errors import UsageError  # noqa: E402


def test_spread_is_the_value_or_mean_low_high():
    assert recipes_table.spread([0.5], ".2f") == "0.50"
    assert recipes_table.spread([0.25, 1.0, 0.5], ".2f") == "0.58 (0.25 .. 1.00)"


def test_transfer_per_scorer_from_the_records():
    entry = {"scores": {"a": [{"rank": 0, "p": 0.9}, {"rank": 3, "p": 0.1}, {"rank": 7, "p": 0.2}],
                        "b": [{"rank": 0, "p": 0.5}]}}
    out = recipes_table.transfer_per_scorer(entry)
    assert out["a"] == pytest.approx({"top1": 1 / 3, "top5": 2 / 3, "p": 0.4})
    assert out["b"] == pytest.approx({"top1": 1.0, "top5": 1.0, "p": 0.5})


def test_runs_over_different_units_are_refused(tmp_path):
    for name, units in (("a", [1, 2]), ("b", [1, 3])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps({"units": units, "recipes": {}, "args": {}}))
    with pytest.raises(UsageError, match="different units"):
        recipes_table.read_runs([str(tmp_path / "a"), str(tmp_path / "b")])
    with pytest.raises(UsageError, match="no results.json"):
        recipes_table.read_runs([str(tmp_path / "c")])


def test_naturalness_colour_measures_against_numpy():
    """Two flat images, one inside the photographs' colour range and one outside: the mean colour, its distance
    to the photographs' and the share inside, computed with numpy from the same reference."""
    import naturalness

    measure = object.__new__(naturalness.Naturalness)       # no feature model: only the colour and slope parts
    measure.photo_colour = np.array([0.4, 0.4, 0.4])
    measure.colour_range = (np.array([0.2, 0.2, 0.2]), np.array([0.6, 0.6, 0.6]))
    measure.wide_colour_range = (np.array([0.05, 0.05, 0.05]), np.array([0.95, 0.95, 0.95]))
    measure.photo_slope, measure.slope_range = -1.3, (-1.6, -1.0)
    measure.features = lambda images: np.random.RandomState(0).randn(len(images), 4)
    measure.photo_features = np.random.RandomState(1).randn(6, 4)
    images = np.stack([np.full((32, 32, 3), 0.5, np.float32), np.full((32, 32, 3), 0.9, np.float32)])
    images[1, :, :, 2] = 0.1                                    # (0.9, 0.9, 0.1): outside the range
    images += 0.02 * np.random.RandomState(2).randn(*images.shape).astype(np.float32)   # a texture to fit a slope to
    out = measure(images)
    per_image = images.astype(np.float64).mean(axis=(1, 2))
    mean = per_image.mean(axis=0)
    np.testing.assert_allclose(out["colour"], mean, atol=1e-4)
    assert out["colour_cast"] == pytest.approx(np.linalg.norm(mean - 0.4), abs=1e-4)
    assert out["colour_inside"] == 0.5
    assert out["colour_inside_wide"] == 1.0                     # (0.9, 0.9, 0.1) is inside 0.05 .. 0.95


def test_grid_peak_finds_a_patch_grid_and_not_noise():
    """A 16-pixel grid (a sawtooth on both axes: every harmonic) added to noise is a tall peak; noise alone sits
    near 1."""
    import naturalness

    rng = np.random.RandomState(0)
    noise = rng.rand(2, 224, 224, 3)
    y = np.arange(224)
    grating = 0.3 * ((y % 16) / 16.0)[:, None] + 0.3 * ((y % 16) / 16.0)[None, :]
    gridded = noise + grating[None, :, :, None]
    assert naturalness.grid_peak(noise, 16).max() < 3
    assert naturalness.grid_peak(gridded, 16).min() > 10
    with pytest.raises(ValueError, match="multiple of 16"):
        naturalness.grid_peak(np.zeros((1, 60, 60, 3)), 16)
