"""The original GUI's unit_jpg_dir layout: exact paths, sizes, and what the GUI's own crop of the montage shows.

The reference is the original's code, restated here: caffevis/jpg_vis_loading_thread.py loads
'<unit_jpg_dir>/regularized_opt/<layer>/<layer>_%04d_montage.jpg' and shows caffevis_helper.crop_to_corner(img, 2)
(small_padding 1, large_padding 2); caffevis/app.py loads 'regularized_opt/<layer>/whole_layer.jpg' with
load_square_sprite_image (ceil(sqrt(n)) x ceil(sqrt(n)) equal tiles, row-major)."""

import math
import shutil

import numpy as np
import pytest

from dvtoolbox.cli.gallery import main as gallery_main
from dvtoolbox.errors import UsageError
from dvtoolbox.io.gui_layout import make_montage, write_gui_layout
from dvtoolbox.io.images import load_image_rgb
from tests.io.gallery_results import UNITS, make_results

N_UNITS = 5  # fc8 of the tiny model; the results hold units 0..3, so unit 4's sprite tile stays empty


def crop_to_corner(img, corner, small_padding=1, large_padding=2):
    """The original's caffevis_helper.crop_to_corner, restated (with its asserts)."""
    assert img.shape[0] == img.shape[1] and img.shape[0] % 2 == 0
    half = img.shape[0] // 2
    big_ii, big_jj = (0 if corner in (0, 1) else 1), (0 if corner in (0, 2) else 1)
    tp = small_padding + large_padding
    return img[big_ii * half + tp:(big_ii + 1) * half - tp, big_jj * half + tp:(big_jj + 1) * half - tp]


def sprite_tiles(img, n):
    """The original's load_square_sprite_image, restated: (n, h, w, 3) tiles, row-major."""
    side = int(math.ceil(math.sqrt(n)))
    assert img.shape[0] % side == 0 and img.shape[1] % side == 0
    h, w = img.shape[0] // side, img.shape[1] // side
    return np.stack([img[(i // side) * h:(i // side + 1) * h, (i % side) * w:(i % side + 1) * w] for i in range(n)])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("gui")
    assert make_results(path) == 0
    return path


def error(a, b):
    """Mean absolute difference of the luma (Rec. 601) of two RGB images, in levels. Luma, because the JPEG
    encoder subsamples chroma 2x2, which blurs the colours of 8x8 images but not their luma."""
    luma = np.array([0.299, 0.587, 0.114])
    return np.abs(a.astype(float) @ luma - b.astype(float) @ luma).mean()


def best_x(folder, unit):
    return load_image_rgb(str(folder / f"opt_fc8_{unit:04d}_0_best_X.jpg"))


def test_one_folder_fills_the_quadrant_the_gui_shows(folder, tmp_path, capsys):
    gui = tmp_path / "unit_jpg_vis"
    assert gallery_main([str(folder), "--gui-dir", str(gui), "--gui-layer-units", str(N_UNITS)]) == 0
    assert f"GUI layout: {len(UNITS) + 1} files under {gui}" in capsys.readouterr().out
    files = sorted(p.relative_to(gui).as_posix() for p in gui.rglob("*") if p.is_file())
    assert files == [f"regularized_opt/fc8/fc8_{u:04d}_montage.jpg" for u in UNITS] + \
        ["regularized_opt/fc8/whole_layer.jpg"]
    for unit in UNITS:
        montage = load_image_rgb(str(gui / "regularized_opt" / "fc8" / f"fc8_{unit:04d}_montage.jpg"))
        assert montage.shape == (2 * (3 * 8 + 10),) * 2 + (3,) == (68, 68, 3)
        shown = crop_to_corner(montage, 2).astype(int)
        assert shown.shape == (3 * 8 + 4, 3 * 8 + 4, 3)
        # seed 0's best_X in the first of the 3x3 positions (re-encoded as JPEG: a few levels off, and far
        # closer to this unit's image than to any other's) ...
        assert error(shown[:8, :8], best_x(folder, unit)) < 3
        assert error(shown[:8, :8], best_x(folder, unit)) < 0.5 * min(
            error(shown[:8, :8], best_x(folder, other)) for other in UNITS if other != unit)
        # ... the 8 others, the separators and the other quadrants are the GUI's background grey (51)
        assert np.abs(shown[:, 12:] - 51).mean() < 2 and np.abs(shown[12:, :] - 51).mean() < 2
        for corner in (0, 1, 3):
            assert np.abs(crop_to_corner(montage, corner).astype(int) - 51).mean() < 1
    sprite = load_image_rgb(str(gui / "regularized_opt" / "fc8" / "whole_layer.jpg"))
    assert sprite.shape == (3 * 8, 3 * 8, 3)
    tiles = sprite_tiles(sprite, N_UNITS).astype(int)
    for unit in UNITS:
        assert error(tiles[unit], best_x(folder, unit)) < 3
        assert error(tiles[unit], best_x(folder, unit)) < 0.5 * min(
            error(tiles[unit], best_x(folder, other)) for other in UNITS if other != unit)
    assert error(tiles[4], np.full((8, 8, 3), 51)) < 2


def test_four_folders_fill_the_four_quadrants_in_table_1_order(folder, tmp_path):
    rows = [tmp_path / f"row{r}" for r in range(1, 5)]
    for r, row in enumerate(rows):
        row.mkdir()
        assert make_results(row, "--rand-seed", str(r)) == 0  # a different image per row
    paths = write_gui_layout([str(r) for r in rows], str(tmp_path / "gui"), tile=16)
    assert [p.split("gui/")[1] for p in paths] == [f"regularized_opt/fc8/fc8_{u:04d}_montage.jpg" for u in UNITS]
    montage = load_image_rgb(paths[2]).astype(int)
    assert montage.shape == (2 * (3 * 16 + 10),) * 2 + (3,)
    for corner, row in enumerate(rows):
        img = load_image_rgb(str(row / f"opt_fc8_0002_{corner}_best_X.jpg"))
        expected = np.repeat(np.repeat(img, 2, axis=0), 2, axis=1).astype(int)  # 8 -> 16, near the bilinear
        shown = crop_to_corner(montage, corner)[:16, :16]
        others = [np.abs(shown - load_image_rgb(str(r / f"opt_fc8_0002_{c}_best_X.jpg")).repeat(2, 0).repeat(2, 1))
                  .mean() for c, r in enumerate(rows) if c != corner]
        assert np.abs(shown - expected).mean() < min(others)  # each quadrant holds its own row's image


def test_montage_places_nine_seeds_row_major_with_the_originals_padding():
    tiles = [np.full((4, 4, 3), 10 * (k + 1), np.uint8) for k in range(9)]
    montage = make_montage({2: tiles}, 4)
    assert montage.shape == (2 * (3 * 4 + 10),) * 2 + (3,)
    shown = crop_to_corner(montage, 2)
    for k in range(9):
        r, c = divmod(k, 3)
        assert np.all(shown[r * 6:r * 6 + 4, c * 6:c * 6 + 4] == 10 * (k + 1))  # 4 px tile + 2 px separator
    assert np.all(shown[4:6] == 51) and np.all(shown[:, 10:12] == 51)


def test_gui_layout_refuses_to_overwrite_and_bad_input(folder, tmp_path, capsys):
    gui = tmp_path / "gui"
    write_gui_layout([str(folder)], str(gui))
    before = {p: p.stat().st_mtime_ns for p in gui.rglob("*.jpg")}
    assert gallery_main([str(folder), "--gui-dir", str(gui)]) == 2
    err = capsys.readouterr().err
    assert "cowardly refusing to overwrite" in err and len(err.strip().splitlines()) == 1
    assert before == {p: p.stat().st_mtime_ns for p in gui.rglob("*.jpg")}
    assert gallery_main([str(folder), "--gui-dir", str(gui), "--brave"]) == 0
    with pytest.raises(UsageError, match="takes 1 results folder"):
        write_gui_layout([str(folder)] * 2, str(tmp_path / "g2"))
    with pytest.raises(UsageError, match="the results have unit 3"):
        write_gui_layout([str(folder)], str(tmp_path / "g3"), layer_units=3)
    with pytest.raises(UsageError, match="no best_X.jpg of layer 'conv1'"):
        write_gui_layout([str(folder)], str(tmp_path / "g4"), layer="conv1")
    assert not (tmp_path / "g2").exists() and not (tmp_path / "g3").exists()


def test_a_damaged_image_refuses_the_layout_before_anything_is_written(folder, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    last = sorted(copy.glob("*_last_X.jpg"))[-1]               # the last unit's: earlier montages would be written
    last.write_bytes(last.read_bytes()[:200])
    gui = tmp_path / "gui"
    assert gallery_main([str(copy), "--gui-dir", str(gui), "--gui-image", "last_X"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"image {str(last)!r} is truncated or damaged" in err, err
    assert not gui.exists()
