"""The obj / norm curve PNG: exact size, each line in its panel with its data's slope, atomic, no pyplot."""

import os
import subprocess
import sys

import numpy as np
import pytest

from dvtoolbox.io.curves import CURVE_SIZE_PX, curve_png, write_curve
from dvtoolbox.io.images import load_image_rgb
from dvtoolbox.optimize.writers import planned_files

OBJ_RGB = (0x1F, 0x77, 0xB4)
NORM_RGB = (0xFF, 0x7F, 0x0E)


def colour_mask(img, rgb, tol=12):
    return np.all(np.abs(img.astype(int) - np.array(rgb)) <= tol, axis=2)


def mean_rows_by_column(mask):
    cols = np.flatnonzero(mask.any(axis=0))
    return cols, np.array([np.flatnonzero(mask[:, c]).mean() for c in cols])


@pytest.fixture
def curve_file(tmp_path):
    ii = list(range(50))
    obj = [0.1 * i for i in ii]  # rising: the line climbs (rows decrease) left to right
    norm = [500.0 - 4 * i for i in ii]  # falling: the line descends
    path = tmp_path / "opt_curve.png"
    write_curve(str(path), ii, obj, norm, best_ii=49, majority_ii=10, title="fc8 unit 1")
    return path, (ii, obj, norm)


def test_curve_has_the_exact_size_and_each_line_in_its_panel_with_its_slope(curve_file):
    path, _ = curve_file
    img = load_image_rgb(str(path))
    assert (img.shape[1], img.shape[0]) == CURVE_SIZE_PX == (400, 300)
    blue, orange = colour_mask(img, OBJ_RGB), colour_mask(img, NORM_RGB)
    assert blue.sum() > 200 and orange.sum() > 200
    half = img.shape[0] // 2
    assert not blue[half:].any() and not orange[:half].any()  # obj on top, norm below
    cols, rows = mean_rows_by_column(blue)
    assert cols.max() - cols.min() > 250  # spans the plot's width
    assert np.all(np.diff(rows) <= 1.0) and rows[0] - rows[-1] > 60  # a straight rising line
    cols, rows = mean_rows_by_column(orange)
    assert np.all(np.diff(rows) >= -1.0) and rows[-1] - rows[0] > 60


def test_write_curve_is_atomic_and_deterministic(curve_file, tmp_path):
    path, (ii, obj, norm) = curve_file
    assert [p.name for p in tmp_path.iterdir()] == ["opt_curve.png"]  # no temp file left
    assert path.read_bytes() == curve_png(ii, obj, norm, 49, 10, "fc8 unit 1")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_non_finite_values_and_no_iterations_are_drawn(tmp_path):
    png = curve_png([0, 1, 2], [1.0, float("nan"), float("inf")], [3.0, 2.0, 1.0])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert curve_png([], [], [])[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="one value per iteration"):
        curve_png([0, 1], [1.0], [1.0, 2.0])


def test_curve_neither_imports_pyplot_nor_changes_the_backend(tmp_path):
    code = ("import matplotlib, sys; before = matplotlib.get_backend(); "
            "from dvtoolbox.io.curves import write_curve; "
            f"write_curve({str(tmp_path / 'c.png')!r}, [0, 1], [0.0, 1.0], [2.0, 1.0]); "
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'; "
            "assert matplotlib.get_backend() == before, matplotlib.get_backend()")
    env = dict(os.environ, MPLBACKEND="svg")  # a non-Agg global backend must stay untouched
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "c.png").is_file()


def test_curve_is_a_planned_file_with_or_without_skipbig():
    for skipbig in (False, True):
        files = planned_files("out/opt_fc8_0001_0_", skipbig)
        assert files[-2:] == ["out/opt_fc8_0001_0_curve.png", "out/opt_fc8_0001_0_config.yaml"]
    assert "out/opt_fc8_0001_0_info_big.pkl" not in planned_files("out/opt_fc8_0001_0_", True)
