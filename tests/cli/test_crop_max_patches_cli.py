"""crop_max_patches.py end to end on the tiny fixed-weight model after find_max_acts.py: the original's layout,
info.txt against the tracker file, the crops against a numpy restatement; the overwrite rule; its bad inputs."""

import os
import pickle
import sys
import types

import numpy as np
import pytest
from PIL import Image

from dvtoolbox.cli.crop_max_patches import main as crop_main
from dvtoolbox.cli.find_max_acts import main as find_main
from dvtoolbox.exemplars.data import Preprocess
from dvtoolbox.exemplars.tracker import load_maxes
from dvtoolbox.io.images import load_image_rgb
from tests.conftest import make_tiny
from tests.folder_state import folder_state

N_PHOTOS = 6


@pytest.fixture
def tracked(tmp_path):
    """datadir with 6 seeded photographs (some not 8x8) and one broken file, a labelled filelist, and the tracker
    file find_max_acts.py made from them (tiny_test, conv1 and fc8, N 4)."""
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(5)
    names = []
    for i in range(N_PHOTOS):
        h, w = (8, 8) if i % 2 else (9 + i, 12)
        name = f"sub/p{i}.png" if i % 3 == 0 else f"p{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / name)
        names.append(name)
    (root / "broken.png").write_bytes(b"not an image")
    names.insert(1, "broken.png")
    filelist = tmp_path / "list.txt"
    filelist.write_text("".join(f"{n} {i % 3}\n" for i, n in enumerate(names)))
    nmt = tmp_path / "maxes.npz"
    assert find_main(["--device", "cpu", "--workers", "0", "--model", "tiny_test", "--N", "4", "--layers",
                      "conv1,fc8", str(root), str(filelist), str(nmt)]) == 0
    return root, names, filelist, nmt


def crop(*argv):
    try:
        return crop_main(["--device", "cpu", *argv])
    except SystemExit as exc:  # argparse's own errors (one line, status 2)
        return exc.code


def files_under(folder):
    return sorted(os.path.relpath(os.path.join(r, n), folder) for r, _, ns in os.walk(folder) for n in ns)


def model_input(root, name):
    """(3, 8, 8) float32: find_max_acts's input of the photograph (tiny_test's contract, RGB minus the mean)."""
    return Preprocess(make_tiny().input_contract)(load_image_rgb(str(root / name))).numpy()


def expected_maxim(x, y, xx):
    """The original's crop of a 3x3 conv (pad 1) unit at (y, x) on 8x8, restated: the 3x3 window of the input
    padded with one row / column of zeros (a field cut by the edge sits at the crop's far end when it starts at 0,
    at its start otherwise), then save_caffe_image(autoscale_center=0): arr / (max(2 max, -2 min) + 1e-10) + 0.5."""
    window = np.pad(x, ((0, 0), (1, 1), (1, 1)))[:, y:y + 3, xx:xx + 3].astype(np.float64)
    scaled = window / (max(2 * window.max(), -2 * window.min()) + 1e-10) + 0.5
    return np.clip(scaled.transpose(1, 2, 0), 0, 1)


def test_conv_units_write_the_original_layout(tracked, tmp_path):
    root, names, _, nmt = tracked
    out = tmp_path / "out"
    assert crop("--model", "tiny_test", "--N", "3", "--do-maxes", "--do-info", "--do-backprop",
                "--do-backprop-norm", "--idx-begin", "1", "--idx-end", "3", str(nmt), str(root), str(out),
                "conv1") == 0
    expected = [f"conv1/unit_{u:04d}/{f}" for u in (1, 2) for f in
                ["backprop_000.png", "backprop_001.png", "backprop_002.png", "backpropnorm_000.png",
                 "backpropnorm_001.png", "backpropnorm_002.png", "info.txt", "maxim_000.png", "maxim_001.png",
                 "maxim_002.png"]]
    assert files_under(out) == expected
    _, _, maxes = load_maxes(str(nmt))
    conv1 = maxes["conv1"]
    for unit in (1, 2):
        lines = (out / f"conv1/unit_{unit:04d}/info.txt").read_text().splitlines()
        assert lines[0] == "# is_conv val image_idx image_class i(if is_conv) j(if is_conv) filename"
        assert len(lines) == 4
        for rank, line in enumerate(lines[1:]):
            image = int(conv1.images[unit, rank])
            y, xx = (int(v) for v in conv1.positions[unit, rank])
            assert line == "1 %.6f %d %d %d %d %s" % (conv1.values[unit, rank], image, image % 3, y, xx,
                                                      names[image])
            saved = np.asarray(Image.open(out / f"conv1/unit_{unit:04d}/maxim_{rank:03d}.png"), np.float64) / 255
            assert saved.shape == (3, 3, 3)
            np.testing.assert_allclose(saved, expected_maxim(model_input(root, names[image]), y, xx),
                                       atol=0.5 / 255 + 1e-9)


def test_fc_units_crop_the_whole_input_and_the_filelist_form(tracked, tmp_path):
    root, names, filelist, nmt = tracked
    out = tmp_path / "out"
    assert crop("--model", "tiny_test", "--do-maxes", "--do-info", "--idx-end", "1", str(nmt), str(root),
                str(filelist), str(out), "fc8") == 0
    assert files_under(out) == ["fc8/unit_0000/info.txt"] + [f"fc8/unit_0000/maxim_{r:03d}.png" for r in range(4)]
    fc8 = load_maxes(str(nmt))[2]["fc8"]
    lines = (out / "fc8/unit_0000/info.txt").read_text().splitlines()[1:]
    assert lines == ["0 %.6f %d %d %s" % (fc8.values[0, r], fc8.images[0, r], fc8.images[0, r] % 3,
                                         names[fc8.images[0, r]]) for r in range(4)]
    x = model_input(root, names[fc8.images[0, 0]]).astype(np.float64)
    whole = np.clip((x / (max(2 * x.max(), -2 * x.min()) + 1e-10) + 0.5).transpose(1, 2, 0), 0, 1)
    saved = np.asarray(Image.open(out / "fc8/unit_0000/maxim_000.png"), np.float64) / 255
    np.testing.assert_allclose(saved, whole, atol=0.5 / 255 + 1e-9)


def test_the_recorded_model_is_the_default_and_a_moved_dataset_reads(tracked, tmp_path):
    """Without --model the tracker file's registered model; datadir replaces the recorded root."""
    root, _, _, nmt = tracked
    moved = tmp_path / "moved"
    root.rename(moved)
    assert crop("--do-maxes", "--idx-end", "1", "--N", "1", str(nmt), str(moved), str(tmp_path / "o"), "conv1") == 0
    assert files_under(tmp_path / "o") == ["conv1/unit_0000/maxim_000.png"]


def test_nothing_is_overwritten_without_brave(tracked, tmp_path, capsys):
    root, _, _, nmt = tracked
    out = tmp_path / "out"
    args = ["--model", "tiny_test", "--do-maxes", "--do-info", "--idx-end", "2", str(nmt), str(root), str(out),
            "conv1"]
    assert crop(*args) == 0
    info = out / "conv1/unit_0001/info.txt"
    info.write_text("mine")
    before = folder_state(tmp_path)
    capsys.readouterr()
    assert crop(*args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--brave" in err and "cowardly" in err
    assert folder_state(tmp_path) == before
    assert crop("--brave", *args) == 0
    assert info.read_text().startswith("# is_conv")


def _damaged(t):
    (t / "damaged.npz").write_bytes(b"PK\x03\x04 not really a zip")
    return str(t / "damaged.npz")


def _other_list(t, names, change):
    lines = [f"{n} {i % 3}" for i, n in enumerate(names)]
    lines = change(lines)
    (t / "other.txt").write_text("".join(line + "\n" for line in lines))
    return str(t / "other.txt")


BAD = [
    ("no --do-*", lambda t, r, n, nmt: [nmt, r, str(t / "o"), "conv1"], [], "--do-maxes"),
    ("idx-end beyond the units", lambda t, r, n, nmt: [nmt, r, str(t / "o"), "conv1"], ["--idx-end", "5"],
     "--idx-end"),
    ("idx-begin not below idx-end", lambda t, r, n, nmt: [nmt, r, str(t / "o"), "conv1"],
     ["--idx-begin", "2", "--idx-end", "2"], "--idx-end"),
    ("idx-begin negative", lambda t, r, n, nmt: [nmt, r, str(t / "o"), "conv1"], ["--idx-begin", "-1"],
     "--idx-begin"),
    ("N beyond the tracker's", lambda t, r, n, nmt: [nmt, r, str(t / "o"), "conv1"], ["--N", "5"], "--N"),
    ("N zero", lambda t, r, n, nmt: [nmt, r, str(t / "o"), "conv1"], ["--N", "0"], "--N"),
    ("unknown layer", lambda t, r, n, nmt: [nmt, r, str(t / "o"), "nosuch"], [], "layer"),
    ("layer not in the tracker", lambda t, r, n, nmt: [nmt, r, str(t / "o"), "prob"], [], "layer 'prob'"),
    ("damaged tracker file", lambda t, r, n, nmt: [_damaged(t), r, str(t / "o"), "conv1"], [], "damaged.npz"),
    ("tracker file missing", lambda t, r, n, nmt: [str(t / "none.npz"), r, str(t / "o"), "conv1"], [],
     "none.npz"),
    ("filelist with a line changed", lambda t, r, n, nmt: [nmt, r, _other_list(
        t, n, lambda ls: ls[:2] + ["p9.png 0"] + ls[3:]), str(t / "o"), "conv1"], [], "filelist"),
    ("filelist with a label changed", lambda t, r, n, nmt: [nmt, r, _other_list(
        t, n, lambda ls: [ls[0].split()[0] + " 7"] + ls[1:]), str(t / "o"), "conv1"], [], "filelist"),
    ("filelist shorter", lambda t, r, n, nmt: [nmt, r, _other_list(t, n, lambda ls: ls[:-1]), str(t / "o"),
                                               "conv1"], [], "filelist"),
    ("datadir missing", lambda t, r, n, nmt: [nmt, str(t / "nowhere"), str(t / "o"), "conv1"], [], "datadir"),
    ("datadir without the images", lambda t, r, n, nmt: [nmt, str(t), str(t / "o"), "conv1"], [], "datadir"),
    ("three paths", lambda t, r, n, nmt: [nmt, r, "conv1"], [], "got 3 paths"),
    ("seven paths with --model", lambda t, r, n, nmt: [nmt, "a.prototxt", "b.caffemodel", r, "l.txt",
                                                       str(t / "o"), "conv1"], ["--model", "tiny_test"], "--model"),
    ("deconv below the first ReLU", lambda t, r, n, nmt: [nmt, r, str(t / "o"), "conv1"], ["--do-deconv"],
     "deconv needs ReLUs"),
    ("bad layout", lambda t, r, n, nmt: [nmt, r, str(t / "o"), "conv1"], ["--layout", "conv1=NHWC"], "--layout"),
    ("malformed layout", lambda t, r, n, nmt: [nmt, r, str(t / "o"), "conv1"], ["--layout", "conv1=NTC:grid=x2"],
     "--layout 'conv1=NTC:grid=x2': grid is HxW"),
    ("bad precision", lambda t, r, n, nmt: [nmt, r, str(t / "o"), "conv1"], ["--precision", "fp8"],
     "argument --precision: invalid choice"),
    ("bad device", lambda t, r, n, nmt: [nmt, r, str(t / "o"), "conv1"], ["--device", "tpu"],
     "--device must be cpu, cuda or cuda:N"),
    ("unknown model", lambda t, r, n, nmt: [nmt, r, str(t / "o"), "conv1"], ["--model", "nope"],
     "--model 'nope' is unknown"),
    ("factory raises", lambda t, r, n, nmt: [nmt, r, str(t / "o"), "conv1"], ["--model",
                                                                                "tests.models.user_models:raises"],
     "raises() raised ValueError"),
    ("module file missing", lambda t, r, n, nmt: [nmt, r, str(t / "o"), "conv1"], ["--model", "nowhere/net.pt"],
     "--model 'nowhere/net.pt': no such file"),
    ("weights file missing", lambda t, r, n, nmt: [nmt, r, str(t / "o"), "conv1"],
     ["--model", "efficientnet_lite0", "--model-weights", "nowhere.pth"], "weights file 'nowhere.pth' does not exist"),
    ("infinite input mean", lambda t, r, n, nmt: [nmt, r, str(t / "o"), "conv1"], ["--input-mean", "(1e400,0,0)"],
     "--input-mean must be 3 finite numbers"),
    ("outdir under a file", lambda t, r, n, nmt: [nmt, r, str(t / "list.txt" / "o"), "conv1"], [],
     "cannot write results to folder"),
]


@pytest.mark.parametrize("case, paths, flags, named", BAD, ids=[b[0] for b in BAD])
def test_bad_inputs_are_one_line_and_write_nothing(tracked, tmp_path, capsys, case, paths, flags, named):
    root, names, _, nmt = tracked
    argv = paths(tmp_path, str(root), names, str(nmt))
    do = [] if case == "no --do-*" else ["--do-maxes", "--do-info"]
    before = folder_state(tmp_path)
    capsys.readouterr()
    model = [] if "--model" in flags else ["--model", "tiny_test"]
    assert crop(*model, *do, *flags, *argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("crop_max_patches.py: error: ") and named in err, err
    assert folder_state(tmp_path) == before


@pytest.fixture
def original_pickle(tracked, tmp_path, monkeypatch):
    """The tracker file's conv1 and fc8 as the original's Python 2 find_max_acts.py pickled them: a
    max_tracker.NetMaxTracker, each unit's maxes ascending, locations (image_idx, image_class, i, j) / (image_idx,
    image_class), no image paths."""
    module = types.ModuleType("max_tracker")
    for name in ("MaxTracker", "NetMaxTracker"):
        setattr(module, name, type(name, (object,), {"__module__": "max_tracker"}))
    monkeypatch.setitem(sys.modules, "max_tracker", module)
    _, _, maxes = load_maxes(str(tracked[3]))
    trackers = {}
    for layer, m in maxes.items():
        locs = np.concatenate([m.images[..., None], m.images[..., None] % 3]
                              + ([m.positions] if m.kind == "conv" else []), axis=2)
        tracker = module.MaxTracker()
        tracker.__dict__.update(is_conv=m.kind == "conv", n_top=m.n_top, max_vals=m.values[:, ::-1].copy(),
                                max_locs=locs[:, ::-1].copy())
        trackers[layer] = tracker
    net = module.NetMaxTracker()
    net.__dict__.update(layers=list(maxes), is_conv=[m.kind == "conv" for m in maxes.values()], init_done=True,
                        n_top=4, initial_val=-1e99, max_trackers=trackers)
    path = tmp_path / "maxes.pkl"
    path.write_bytes(pickle.dumps(net, protocol=2))
    return path


def test_the_originals_pickle_with_its_filelist_writes_what_ours_does(tracked, original_pickle, tmp_path, capsys):
    root, _, filelist, nmt = tracked
    common = ["--model", "tiny_test", "--do-maxes", "--do-info", "--idx-end", "2"]
    assert crop(*common, str(nmt), str(root), str(tmp_path / "ours"), "conv1") == 0
    before = folder_state(tmp_path)
    assert crop(*common, str(original_pickle), str(root), str(tmp_path / "orig"), "conv1") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "filelist" in err and "records no image paths" in err
    assert folder_state(tmp_path) == before
    assert crop(*common, str(original_pickle), str(root), str(filelist), str(tmp_path / "orig"), "conv1") == 0
    assert files_under(tmp_path / "orig") == files_under(tmp_path / "ours")
    for name in files_under(tmp_path / "ours"):
        assert (tmp_path / "orig" / name).read_bytes() == (tmp_path / "ours" / name).read_bytes(), name
