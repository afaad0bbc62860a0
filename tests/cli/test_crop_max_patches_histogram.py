"""crop_max_patches.py --do-histogram: each unit's histogram.txt and histogram.png from the tracker file's
histograms; planned and refused under the overwrite rule; refused in one line when the file holds none."""

import math

import numpy as np
import pytest

from dvtoolbox.cli.find_max_acts import main as find_main
from dvtoolbox.exemplars import crop_job
from dvtoolbox.exemplars.tracker import load_maxes
from dvtoolbox.io.images import load_image_rgb
from tests.cli.test_crop_max_patches_cli import crop, files_under, original_pickle, tracked  # noqa: F401 (fixtures)
from tests.folder_state import folder_state


def read_histogram_txt(path):
    """(header, [(lower, upper, count)]) of a histogram.txt, restated: one '#' line, then 'lower upper count'."""
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# histogram ") and not any(line.startswith("#") for line in lines[1:])
    rows = [(float(a), float(b), int(c)) for a, b, c in (line.split() for line in lines[1:])]
    return lines[0], rows


def no_model(*args, **kwargs):
    raise AssertionError("the histogram alone needs no model")


def test_the_histogram_alone_writes_each_units_files_from_the_tracker_file(tracked, tmp_path, monkeypatch):
    root, _, _, nmt = tracked
    monkeypatch.setattr(crop_job, "open_exemplar_run", no_model)
    out = tmp_path / "out"
    assert crop("--model", "tiny_test", "--do-histogram", "--idx-begin", "1", "--idx-end", "3", str(nmt),
                str(tmp_path / "not even a folder"), str(out), "conv1") == 0
    assert files_under(out) == [f"conv1/unit_{u:04d}/{f}" for u in (1, 2) for f in ("histogram.png",
                                                                                     "histogram.txt")]
    meta, _, maxes = load_maxes(str(nmt))
    h = maxes["conv1"].histogram
    assert meta["hist_bins"] == 32 and (h.count == 6).all()  # 6 readable images of 7
    for unit in (1, 2):
        header, rows = read_histogram_txt(out / f"conv1/unit_{unit:04d}/histogram.txt")
        assert f"layer=conv1 unit={unit} bins=32 count=6 " in header
        assert f"min={h.minimum[unit]:.9g} max={h.maximum[unit]:.9g}" in header
        edges = [-math.inf] + [float(e) for e in h.edges[unit]] + [math.inf]
        assert [r[0] for r in rows] == edges[:-1] and [r[1] for r in rows] == edges[1:]
        assert [r[2] for r in rows] == h.counts[unit].tolist() and sum(r[2] for r in rows) == 6
        png = load_image_rgb(str(out / f"conv1/unit_{unit:04d}/histogram.png"))
        assert png.shape == (200, 320, 3)
        assert red_ticks(png) == len({round(float(v), 2) for v in maxes["conv1"].values[unit]}) == 4
        blue = np.all(np.abs(png.astype(int) - [0x4C, 0x72, 0xB0]) <= 12, axis=2)
        assert blue.sum() >= 500  # the bars


def red_ticks(png):
    """How many separate red vertical ticks (the top-N values) the chart's top rows show."""
    r, g, b = (png[:40].astype(int)[..., c] for c in range(3))
    columns = ((r > 150) & (g < 110) & (b < 110)).sum(axis=0) >= 8
    return int(np.sum(columns[1:] & ~columns[:-1]) + columns[0])


def test_with_the_pages_and_the_overwrite_rule(tracked, tmp_path, capsys):
    root, _, _, nmt = tracked
    out = tmp_path / "out"
    args = ["--model", "tiny_test", "--do-maxes", "--do-info", "--do-histogram", "--idx-end", "2", "--N", "2",
            str(nmt), str(root), str(out), "fc8"]
    assert crop(*args) == 0
    assert files_under(out) == [f"fc8/unit_{u:04d}/{f}" for u in (0, 1) for f in
                                ("histogram.png", "histogram.txt", "info.txt", "maxim_000.png", "maxim_001.png")]
    mine = out / "fc8/unit_0001/histogram.txt"
    mine.write_text("mine")
    (out / "fc8/unit_0000/info.txt").unlink()
    before = folder_state(tmp_path)
    capsys.readouterr()
    assert crop(*args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cowardly refusing to overwrite" in err and "histogram.txt" in err
    assert folder_state(tmp_path) == before  # info.txt of unit 0 not rewritten either
    assert crop("--brave", *args) == 0
    assert mine.read_text().startswith("# histogram layer=fc8 unit=1 ")


def test_a_deconv_refusal_writes_no_histogram(tracked, tmp_path, capsys):
    root, _, _, nmt = tracked
    before = folder_state(tmp_path)
    assert crop("--model", "tiny_test", "--do-deconv", "--do-histogram", str(nmt), str(root), str(tmp_path / "o"),
                "conv1") == 2
    assert "deconv needs ReLUs" in capsys.readouterr().err
    assert folder_state(tmp_path) == before


@pytest.mark.parametrize("source", ["--hist-bins 0", "the original's pickle"])
def test_a_tracker_file_without_histograms_is_refused_in_one_line(tracked, original_pickle, tmp_path, capsys,
                                                                  source):
    root, _, filelist, _ = tracked
    if source == "--hist-bins 0":
        nmt = tmp_path / "plain.npz"
        assert find_main(["--device", "cpu", "--workers", "0", "--model", "tiny_test", "--N", "2", "--layers", "fc8",
                          "--hist-bins", "0", str(root), str(filelist), str(nmt)]) == 0
    else:
        nmt = original_pickle
    before = folder_state(tmp_path)
    capsys.readouterr()
    assert crop("--model", "tiny_test", "--do-info", "--do-histogram", str(nmt), str(root), str(filelist),
                str(tmp_path / "o"), "fc8") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no activation histogram" in err and "--do-histogram" in err, err
    assert "--hist-bins" in err and folder_state(tmp_path) == before
