"""The layer page end to end on the tiny fixed-weight model: the three stages' files, the page showing each unit's
synthetic image beside its crops, the crops equal to what crop_max_patches.py writes alone; its bad inputs."""

import numpy as np
import pytest
from PIL import Image

from dvtoolbox.cli.crop_max_patches import main as crop_main
from dvtoolbox.cli.layer_page import main as page_main
from dvtoolbox.exemplars.layer_page import contiguous_runs
from tests.folder_state import folder_state


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    rng = np.random.default_rng(11)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (8 + i, 10, 3), dtype=np.uint8)).save(root / f"p{i}.png")
    return root


def page(*argv):
    try:
        return page_main(["--device", "cpu", "--workers", "0", "--model", "tiny_test", *argv])
    except SystemExit as exc:
        return exc.code


def test_contiguous_runs():
    assert contiguous_runs([7, 1, 2, 3]) == [(1, 4), (7, 8)]
    assert contiguous_runs([0]) == [(0, 1)]
    assert contiguous_runs([4, 2]) == [(2, 3), (4, 5)]


def test_one_command_makes_the_page(photos, tmp_path, capsys):
    out = tmp_path / "page"
    assert page("--layer", "conv1", "--units", "0,2:4", "--N", "3", "--max-iter", "3", str(photos), str(out)) == 0
    index = out / "synthetic" / "index.html"
    assert capsys.readouterr().out.strip() == str(index)
    html = index.read_text()
    for unit in (0, 2, 3):
        assert f"opt_conv1_{unit:04d}_0_best_X.jpg" in html
        assert (out / "exemplars" / "conv1" / f"unit_{unit:04d}" / "info.txt").is_file()
        assert (out / "exemplars" / "conv1" / f"unit_{unit:04d}" / "histogram.txt").is_file()
        for rank in range(3):
            assert f"../exemplars/conv1/unit_{unit:04d}/maxim_{rank:03d}.png" in html
    assert html.count('<svg class="histsvg"') == 3  # each unit's activation histogram
    assert not (out / "exemplars" / "conv1" / "unit_0001").exists()
    info = (out / "synthetic" / "opt_conv1_0002_0_info.txt").read_text()
    assert "push_unit: (2, 4, 4)" in info  # the centre of conv1's 8 x 8 grid
    assert (out / "maxes.npz").is_file()
    # the crops are crop_max_patches.py's own
    alone = tmp_path / "alone"
    assert crop_main(["--device", "cpu", "--model", "tiny_test", "--do-maxes", "--do-backprop", "--do-info",
                      "--do-histogram",
                      "--idx-begin", "2", "--idx-end", "4", str(out / "maxes.npz"), str(photos), str(alone),
                      "conv1"]) == 0
    for name in ("maxim_000.png", "backprop_001.png", "info.txt", "histogram.txt"):
        assert (alone / "conv1" / "unit_0003" / name).read_bytes() == \
            (out / "exemplars" / "conv1" / "unit_0003" / name).read_bytes()


def test_a_folder_in_use_is_refused_and_kept(photos, tmp_path, capsys):
    out = tmp_path / "page"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    before = folder_state(tmp_path)
    assert page("--layer", "conv1", "--units", "0", "--max-iter", "2", str(photos), str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not empty" in err[0] and "--brave" in err[0]
    assert folder_state(tmp_path) == before


@pytest.mark.parametrize("argv, flag", [
    (["--layer", "nope"], "unknown layer 'nope'"),
    (["--layer", "conv1", "--units", "0:x"], "--units"),
    (["--layer", "conv1", "--units", "99"], "--units"),
    (["--layer", "conv1", "--N", "0"], "--N"),
    (["--layer", "conv1", "--max-iter", "0"], "--max-iter"),
    (["--layer", "conv1", "--seed", "-1"], "--seed"),
    (["--layer", "conv1", "--batch-size", "0"], "--batch-size"),
])
def test_bad_inputs_one_line_nothing_written(photos, tmp_path, capsys, argv, flag):
    out = tmp_path / "page"
    before = folder_state(tmp_path)
    extra = [] if "--max-iter" in argv else ["--max-iter", "2"]
    assert page(*argv, *extra, str(photos), str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0], err
    assert "Traceback" not in err[0]
    assert folder_state(tmp_path) == before
