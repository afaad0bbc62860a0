"""The original GUI's max_im / max_deconv panes from crop_max_patches.py's crops: exact paths, the montage geometry
against a numpy restatement of its rule, the CLI end to end after find_max_acts.py + crop_max_patches.py, and its
bad inputs.

What the original reads (caffevis/jpg_vis_loading_thread.py, restated): for layer L and unit u,
os.path.join(caffevis_unit_jpg_dir, 'max_im', L, '%s_%04d.jpg' % (L, u)) and the same under 'max_deconv', each
whole. The rule of the montage, restated here with np.pad and np.concatenate (not the index arithmetic of the code):
each crop padded by 1 px of the window background (51), the 9 ranks in 3 rows of 3, rank 0 top left, row-major
(ImageMagick's ``montage -tile 3x3 -geometry +1+1``, the rule of each quadrant of the regularized_opt montages)."""

import shutil

import numpy as np
import pytest
from PIL import Image

from dvtoolbox.cli.crop_max_patches import main as crop_main
from dvtoolbox.cli.find_max_acts import main as find_main
from dvtoolbox.cli.gallery import main as gallery_main
from dvtoolbox.errors import UsageError
from dvtoolbox.io.gui_layout import make_exemplar_montage, write_gui_layout
from dvtoolbox.io.images import load_image_rgb
from tests.folder_state import folder_state
from tests.io.gallery_results import EXEMPLAR_UNITS, N_TOP, UNITS, make_exemplars, make_results

GREY = 51  # the GUI's window_background (.2, .2, .2)
PANES = (("max_im", "maxim"), ("max_deconv", "deconv"))


def gui_path(unit_jpg_dir, pane, layer, unit):
    """The original's own path rule (jpg_vis_loading_thread.py)."""
    return unit_jpg_dir / pane / layer / ("%s_%04d.jpg" % (layer, unit))


def restated_montage(crops, tile):
    """The montage rule restated: 9 positions (None: background), each padded by 1 px, 3 rows of 3."""
    cells = [np.full((tile, tile, 3), GREY, np.uint8) if c is None else c for c in crops]
    cells += [np.full((tile, tile, 3), GREY, np.uint8)] * (9 - len(cells))
    padded = [np.pad(c, ((1, 1), (1, 1), (0, 0)), constant_values=GREY) for c in cells]
    return np.concatenate([np.concatenate(padded[r * 3:r * 3 + 3], axis=1) for r in range(3)], axis=0)


def luma_error(a, b):
    """Mean absolute difference of the Rec. 601 luma, in levels (JPEG subsamples chroma; luma survives)."""
    luma = np.array([0.299, 0.587, 0.114])
    return np.abs(a.astype(float) @ luma - b.astype(float) @ luma).mean()


def files_under(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def exemplified(tmp_path_factory):
    """(results folder of fc8 units 0..3, crop_max_patches' crops/fc8 of units 0..4, N 3, with deconv)."""
    root = tmp_path_factory.mktemp("gui_exemplars")
    (root / "res").mkdir()
    assert make_results(root / "res") == 0
    return root / "res", make_exemplars(root)


@pytest.fixture(scope="module")
def conv_crops(tmp_path_factory):
    """find_max_acts.py then crop_max_patches.py on 6 seeded photographs, relu1 of tiny_test (3x3 crops), N 4,
    units 0..1, maxim + deconv + info: returns out/relu1."""
    root = tmp_path_factory.mktemp("conv_crops")
    data = root / "photos"
    data.mkdir()
    rng = np.random.default_rng(11)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (8 + i % 2, 8, 3), dtype=np.uint8)).save(data / f"p{i}.png")
    nmt = root / "maxes.npz"
    assert find_main(["--device", "cpu", "--workers", "0", "--model", "tiny_test", "--N", "4", "--layers",
                      "relu1", str(data), str(nmt)]) == 0
    assert crop_main(["--device", "cpu", "--model", "tiny_test", "--do-maxes", "--do-deconv", "--do-info",
                      "--idx-end", "2", str(nmt), str(data), str(root / "out"), "relu1"]) == 0
    return root / "out" / "relu1"


# the geometry

def test_montage_puts_nine_ranks_row_major_with_one_pixel_of_grey_padding():
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (5, 5, 3), dtype=np.uint8) for _ in range(9)]
    montage = make_exemplar_montage(crops, 5)
    assert montage.shape == (3 * (5 + 2), 3 * (5 + 2), 3) == (21, 21, 3)
    np.testing.assert_array_equal(montage, restated_montage(crops, 5))
    for rank in range(9):  # each tile at its place: 1 px edge, 2 px between tiles
        r, c = divmod(rank, 3)
        np.testing.assert_array_equal(montage[1 + 7 * r:6 + 7 * r, 1 + 7 * c:6 + 7 * c], crops[rank])
    padding = np.ones((21, 21), bool)
    for rank in range(9):
        r, c = divmod(rank, 3)
        padding[1 + 7 * r:6 + 7 * r, 1 + 7 * c:6 + 7 * c] = False
    assert padding.sum() == 21 * 21 - 9 * 25 and np.all(montage[padding] == GREY)


def test_fewer_ranks_and_missing_ranks_are_background():
    crops = [np.full((2, 2, 3), 200 + k, np.uint8) for k in range(4)]
    crops[1] = None
    montage = make_exemplar_montage(crops, 2)
    np.testing.assert_array_equal(montage, restated_montage(crops, 2))
    assert np.all(montage[1:3, 5:7] == GREY) and np.all(montage[5:7, 1:3] == 203)  # rank 1 missing; rank 3 row 2
    with pytest.raises(ValueError, match="at most 9"):
        make_exemplar_montage(crops * 3, 2)


# the CLI end to end

def test_results_and_crops_fill_all_three_panes(exemplified, tmp_path, capsys):
    results, crops = exemplified
    gui = tmp_path / "unit_jpg_vis"
    assert gallery_main([str(results), "--gui-dir", str(gui), "--gui-exemplars", str(crops)]) == 0
    n_files = len(UNITS) + 2 * len(EXEMPLAR_UNITS)
    assert f"GUI layout: {n_files} files under {gui}" in capsys.readouterr().out
    assert files_under(gui) == sorted(
        [f"regularized_opt/fc8/fc8_{u:04d}_montage.jpg" for u in UNITS]
        + [f"{pane}/fc8/fc8_{u:04d}.jpg" for pane, _ in PANES for u in EXEMPLAR_UNITS])
    for pane, prefix in PANES:
        for unit in EXEMPLAR_UNITS:
            shown = load_image_rgb(str(gui_path(gui, pane, "fc8", unit)))
            own = [load_image_rgb(str(crops / f"unit_{unit:04d}" / f"{prefix}_{r:03d}.png")) for r in range(N_TOP)]
            assert own[0].shape == (8, 8, 3) and shown.shape == (30, 30, 3)  # fc8 crops: the whole 8x8 input
            assert luma_error(shown, restated_montage(own, 8)) < 3  # re-encoded as JPEG: a few levels off
            for rank in range(N_TOP):  # each rank at its own place, closer to its crop than to the others
                r, c = divmod(rank, 3)
                tile = shown[1 + 10 * r:9 + 10 * r, 1 + 10 * c:9 + 10 * c]
                others = [o for o in own if not np.array_equal(o, own[rank])]
                assert others or prefix == "deconv"  # an fc unit's deconv image does not depend on the photo
                assert all(luma_error(tile, own[rank]) < 0.5 * luma_error(tile, o) for o in others)
            assert np.abs(shown[11:].astype(int) - GREY).mean() < 2  # ranks 3..8 empty: N was 3


def test_crops_alone_make_the_gui_layout_and_no_page(exemplified, tmp_path):
    _, crops = exemplified
    copy = tmp_path / "fc8"
    shutil.copytree(crops, copy)
    before = folder_state(copy)
    gui = tmp_path / "gui"
    assert gallery_main(["--gui-dir", str(gui), "--gui-exemplars", str(copy)]) == 0
    assert files_under(gui) == sorted(f"{pane}/fc8/fc8_{u:04d}.jpg" for pane, _ in PANES for u in EXEMPLAR_UNITS)
    assert folder_state(copy) == before  # no index.html, nothing else written beside the crops


def test_extra_files_in_unit_folders_are_ignored(exemplified, tmp_path):
    """A histogram (crop_max_patches --do-histogram: histogram.png, histogram.txt) has no GUI pane."""
    _, crops = exemplified
    plain, extra = tmp_path / "plain" / "fc8", tmp_path / "extra" / "fc8"
    shutil.copytree(crops, plain)
    shutil.copytree(crops, extra)
    for unit in EXEMPLAR_UNITS:
        Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(extra / f"unit_{unit:04d}" / "histogram.png")
        (extra / f"unit_{unit:04d}" / "histogram.txt").write_text("# histogram layer=fc8\n-inf 0 0\n0 1 5\n1 inf 0\n")
    (extra / "unit_0001" / "notes").mkdir()
    (extra / "README").write_text("not a unit")
    paths = [write_gui_layout([], str(tmp_path / f"gui_{name}"), crops=str(folder))
             for name, folder in (("plain", plain), ("extra", extra))]
    assert [p.split("gui_extra/")[1] for p in paths[1]] == [p.split("gui_plain/")[1] for p in paths[0]]
    for a, b in zip(*paths):
        np.testing.assert_array_equal(load_image_rgb(a), load_image_rgb(b))


def test_conv_crops_missing_deconv_and_ranks_without_info(conv_crops, tmp_path):
    """3x3 crops of relu1, N 4; unit 1 without deconv images, unit 0 without info.txt and rank 2's crop."""
    layer = tmp_path / "out" / "relu1"
    shutil.copytree(conv_crops, layer)
    for f in (layer / "unit_0001").glob("deconv_*.png"):
        f.unlink()
    (layer / "unit_0000" / "info.txt").unlink()
    (layer / "unit_0000" / "maxim_002.png").unlink()
    gui = tmp_path / "gui"
    assert gallery_main(["--gui-dir", str(gui), "--gui-exemplars", str(layer)]) == 0
    assert files_under(gui) == ["max_deconv/relu1/relu1_0000.jpg", "max_im/relu1/relu1_0000.jpg",
                                "max_im/relu1/relu1_0001.jpg"]
    for pane, prefix, unit in (("max_im", "maxim", 0), ("max_im", "maxim", 1), ("max_deconv", "deconv", 0)):
        own = [load_image_rgb(str(conv_crops / f"unit_{unit:04d}" / f"{prefix}_{r:03d}.png")) for r in range(4)]
        assert own[0].shape == (3, 3, 3)
        if (pane, unit) == ("max_im", 0):
            own[2] = None  # its rank stays background
        shown = load_image_rgb(str(gui_path(gui, pane, "relu1", unit)))
        assert shown.shape == (15, 15, 3)
        assert luma_error(shown, restated_montage(own, 3)) < 4
    big = tmp_path / "big"
    assert gallery_main(["--gui-dir", str(big), "--gui-exemplars", str(layer), "--gui-tile", "12"]) == 0
    assert load_image_rgb(str(gui_path(big, "max_im", "relu1", 1))).shape == (42, 42, 3)


def test_nothing_is_overwritten_without_brave(exemplified, tmp_path, capsys):
    results, crops = exemplified
    gui = tmp_path / "gui"
    argv = [str(results), "--gui-dir", str(gui), "--gui-exemplars", str(crops)]
    assert gallery_main(argv) == 0
    (gui / "max_deconv" / "fc8" / "fc8_0004.jpg").unlink()  # one file gone: the others still refuse the run
    before, results_before = folder_state(gui), folder_state(results)
    capsys.readouterr()
    assert gallery_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cowardly refusing to overwrite" in err and "--brave" in err, err
    assert folder_state(gui) == before and folder_state(results) == results_before
    assert gallery_main(argv + ["--brave"]) == 0
    assert (gui / "max_deconv" / "fc8" / "fc8_0004.jpg").is_file()


# bad input: one line, exit 2, nothing written

def _copy(crops, target, name=None, content=None):
    """A copy of ``crops`` at ``target``; ``name`` then written with ``content`` (bytes), or removed (None)."""
    shutil.copytree(crops, target)
    if name is not None and content is None:
        for path in target.glob(name):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    elif name is not None:
        (target / name).write_bytes(content)
    return str(target)


def _empty(tmp):
    (tmp / "empty").mkdir()
    return str(tmp / "empty")


def _file(tmp):
    (tmp / "afile").write_text("x")
    return str(tmp / "afile")


# name -> (argv given the tmp folder, the results folder and crops/fc8; the line's text, {t}: tmp folder)
BAD = {
    "missing folder": (lambda t, res, cr: [res, "--gui-dir", f"{t}/gui", "--gui-exemplars", f"{t}/fc8"],
                       "--gui-exemplars folder '{t}/fc8' does not exist or is not a folder"),
    "a file": (lambda t, res, cr: ["--gui-dir", f"{t}/gui", "--gui-exemplars", _file(t)],
               "--gui-exemplars folder '{t}/afile' does not exist or is not a folder"),
    "no unit folders": (lambda t, res, cr: ["--gui-dir", f"{t}/gui", "--gui-exemplars", _empty(t)],
                        "--gui-exemplars folder '{t}/empty' holds no unit_NNNN folder"),
    "the outdir, not its layer": (lambda t, res, cr: ["--gui-dir", f"{t}/gui", "--gui-exemplars",
                                                      _copy(cr.parent, t / "crops")],
                                  "--gui-exemplars folder '{t}/crops' holds no unit_NNNN folder"),
    "a layer the results do not hold": (
        lambda t, res, cr: [res, "--gui-dir", f"{t}/gui", "--gui-exemplars", _copy(cr, t / "fc7")],
        "--gui-exemplars folder '{t}/fc7' is of layer 'fc7' (its folder's name) but"),
    "--gui-layer another layer": (
        lambda t, res, cr: ["--gui-dir", f"{t}/gui", "--gui-exemplars", _copy(cr, t / "fc8"), "--gui-layer", "conv1"],
        "--gui-layer 'conv1' is not the layer of --gui-exemplars '{t}/fc8', 'fc8'"),
    "damaged crop": (lambda t, res, cr: [res, "--gui-dir", f"{t}/gui", "--gui-exemplars",
                                         _copy(cr, t / "fc8", "unit_0004/maxim_002.png", b"\x89PNG")],
                     "image '{t}/fc8/unit_0004/maxim_002.png'"),
    "damaged deconv": (lambda t, res, cr: [res, "--gui-dir", f"{t}/gui", "--gui-exemplars",
                                           _copy(cr, t / "fc8", "unit_0004/deconv_002.png",
                                                 (cr / "unit_0004/deconv_002.png").read_bytes()[:60])],
                       "image '{t}/fc8/unit_0004/deconv_002.png' is truncated or damaged"),
    "a deconv that is text": (lambda t, res, cr: ["--gui-dir", f"{t}/gui", "--gui-exemplars",
                                                  _copy(cr, t / "fc8", "unit_0003/deconv_000.png", b"hello")],
                              "image '{t}/fc8/unit_0003/deconv_000.png' is not an image file"),
    "no crop and no deconv": (lambda t, res, cr: ["--gui-dir", f"{t}/gui", "--gui-exemplars",
                                                  _copy(cr, t / "fc8", "unit_*/[md]*.png")],
                              "--gui-exemplars folder '{t}/fc8' has no maxim_NNN.png or deconv_NNN.png"),
    "info.txt row not a number": (lambda t, res, cr: ["--gui-dir", f"{t}/gui", "--gui-exemplars",
                                                      _copy(cr, t / "fc8", "unit_0002/info.txt",
                                                            b"# is_conv val\n0 big 1 -1 p1.png\n")],
                                  "{t}/fc8/unit_0002/info.txt line 2 is not a crop_max_patches.py info.txt row"),
    "--gui-exemplars without --gui-dir": (lambda t, res, cr: [res, "--gui-exemplars", str(cr)],
                                          "--gui-exemplars writes into the GUI layout: give --gui-dir DIR too"),
    "no FOLDER, no --gui-exemplars": (lambda t, res, cr: ["--gui-dir", f"{t}/gui"],
                                      "give at least one results FOLDER, or --gui-dir DIR with --gui-exemplars"),
    "--exemplars without FOLDER": (lambda t, res, cr: ["--gui-dir", f"{t}/gui", "--gui-exemplars", str(cr),
                                                       "--exemplars", str(cr)],
                                   "--exemplars shows crops in the results' index.html: give the results FOLDER"),
    "--gui-layer-units without results": (
        lambda t, res, cr: ["--gui-dir", f"{t}/gui", "--gui-exemplars", str(cr), "--gui-layer-units", "5"],
        "--gui-layer-units writes whole_layer.jpg from the synthetic images: give results folders too"),
    "--gui-layer-units below a crop's unit": (
        lambda t, res, cr: [res, "--gui-dir", f"{t}/gui", "--gui-exemplars", str(cr), "--gui-layer-units", "4"],
        "--gui-layer-units 4: the results have unit 4"),
    "--gui-tile 0": (lambda t, res, cr: ["--gui-dir", f"{t}/gui", "--gui-exemplars", str(cr), "--gui-tile", "0"],
                     "--gui-tile"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(exemplified, tmp_path, capsys, case):
    results, crops = exemplified
    make, expected = BAD[case]
    argv = make(tmp_path, str(results), crops)
    before, results_before = folder_state(tmp_path), folder_state(results.parent)
    assert gallery_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m dvtoolbox.cli.gallery: error: ") and err.count("\n") == 1, err
    assert expected.format(t=tmp_path) in err and "Traceback" not in err, err
    assert folder_state(tmp_path) == before and folder_state(results.parent) == results_before
    assert not (tmp_path / "gui").exists()


def test_the_library_call_refuses_an_empty_layout(tmp_path):
    with pytest.raises(UsageError, match="needs results folders .*, crops"):
        write_gui_layout([], str(tmp_path / "gui"))
    assert not (tmp_path / "gui").exists()
