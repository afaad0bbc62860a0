"""find_max_acts.py end to end on the tiny fixed-weight model, against a brute-force top N; its bad inputs."""

import logging
import os

import numpy as np
import pytest
import torch
from PIL import Image

from dvtoolbox.cli.find_max_acts import main
from dvtoolbox.exemplars.data import Preprocess
from dvtoolbox.exemplars.histogram import edges_from_range
from dvtoolbox.exemplars.tracker import load_maxes
from dvtoolbox.io.images import load_image_rgb
from tests.conftest import make_tiny
from tests.folder_state import folder_state

N_PHOTOS = 7


@pytest.fixture
def photos(tmp_path):
    """datadir with 7 seeded photographs (some not 8x8: resized and cropped), one broken file, and a filelist
    naming them with labels (the broken one third, so indices after it must stay those of the list)."""
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(11)
    names = []
    for i in range(N_PHOTOS):
        h, w = (8, 8) if i % 2 else (10 + i, 12)
        name = f"sub/p{i}.png" if i % 3 == 0 else f"p{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / name)
        names.append(name)
    (root / "broken.png").write_bytes(b"not an image")
    names.insert(2, "broken.png")
    (tmp_path / "list.txt").write_text("".join(f"{n} {i % 4}\n" for i, n in enumerate(names)))
    return root, names


def run(*argv):
    try:
        return main(["--device", "cpu", "--workers", "0", *argv])
    except SystemExit as exc:  # argparse's own errors (one line, status 2)
        return exc.code


def brute_force(root, names, n):
    """Every activation of conv1 (4, 8, 8) and fc8 (5) per readable image, ranked by value then image index."""
    model = make_tiny()
    preprocess = Preprocess(model.input_contract)
    readable = [i for i, name in enumerate(names) if name != "broken.png"]
    x = torch.stack([preprocess(load_image_rgb(str(root / names[i]))) for i in readable])
    with torch.no_grad():
        conv = model.conv1(x / 64.0).numpy()
        fc = model(x).numpy()
    out = {}
    for layer, acts in (("conv1", conv), ("fc8", fc)):
        flat = acts.reshape(len(readable), acts.shape[1], -1)
        best, arg = flat.max(axis=2), flat.argmax(axis=2)
        values, images, positions = [], [], []
        for u in range(acts.shape[1]):
            order = sorted(range(len(readable)), key=lambda k: (-best[k, u], readable[k]))[:n]
            values.append([best[k, u] for k in order])
            images.append([readable[k] for k in order])
            positions.append([divmod(int(arg[k, u]), 8) if layer == "conv1" else (0, 0) for k in order])
        out[layer] = np.array(values), np.array(images), np.array(positions), best
    return out


@pytest.mark.parametrize("batch_size", ["1", "3"])
def test_filelist_run_equals_brute_force(photos, tmp_path, batch_size, caplog):
    root, names = photos
    outfile = tmp_path / "maxes.pkl"
    with caplog.at_level(logging.WARNING):
        assert run("--model", "tiny_test", "--N", "4", "--layers", "conv1,fc8", "--batch-size", batch_size,
                   str(root), str(tmp_path / "list.txt"), str(outfile)) == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "1 of 8 images could not be read" in warnings[0].getMessage()
    meta, images, maxes = load_maxes(str(outfile))
    assert images.paths == names and images.labels == [i % 4 for i in range(len(names))]
    assert meta["images_done"] == 8 and meta["unreadable"] == 1 and meta["model"] == "tiny_test"
    expected = brute_force(root, names, 4)
    for layer, kind in (("conv1", "conv"), ("fc8", "fc")):
        values, image_idx, positions, every = expected[layer]
        assert maxes[layer].kind == kind
        np.testing.assert_array_equal(maxes[layer].images, image_idx)
        np.testing.assert_array_equal(maxes[layer].positions, positions)
        np.testing.assert_allclose(maxes[layer].values, values, rtol=1e-6, atol=1e-6)
    assert 2 not in maxes["conv1"].images  # the broken image ranks nowhere
    for layer in ("conv1", "fc8"):
        assert_histogram(maxes[layer].histogram, expected[layer][3], 32)
    assert meta["hist_bins"] == 32 and meta["hist_calibration"] == {"images": 8, "margin": 0.25}


def assert_histogram(h, every, bins):
    """every (images, U): each readable image's unit value; all are calibration images (the first 64), so the edges
    are the rule's over their whole range, and each column's counts numpy's histogram (none under or over). The
    run's batches and the brute force's differ in float32 rounding: the values must stay clear of the edges."""
    np.testing.assert_array_equal(h.edges, edges_from_range(every.min(0), every.max(0), bins))
    assert (np.abs(every[:, :, None] - h.edges[None]) > 1e-5).all()
    for unit in range(every.shape[1]):
        inside, _ = np.histogram(every[:, unit], h.edges[unit])
        np.testing.assert_array_equal(h.counts[unit], [0, *inside, 0])
    np.testing.assert_allclose(h.minimum, every.min(0), rtol=1e-6)
    np.testing.assert_allclose(h.maximum, every.max(0), rtol=1e-6)
    assert (h.count == len(every)).all()
    np.testing.assert_allclose(h.total, every.astype(np.float64).sum(0), rtol=1e-6, atol=1e-4)


def test_no_histogram(photos, tmp_path):
    root, _ = photos
    assert run("--model", "tiny_test", "--hist-bins", "0", "--layers", "fc8", str(root), str(tmp_path / "m.npz")) == 0
    meta, _, maxes = load_maxes(str(tmp_path / "m.npz"))
    assert meta["hist_bins"] == 0 and "hist_calibration" not in meta and maxes["fc8"].histogram is None


def test_folder_run_with_the_default_layers(photos, tmp_path):
    """No filelist: every image under datadir, sorted (the broken one skipped); tiny_test has the original's conv1,
    fc8 and prob."""
    root, _ = photos
    outfile = tmp_path / "out" / "maxes.npz"
    assert run("--model", "tiny_test", str(root), str(outfile)) == 0
    meta, images, maxes = load_maxes(str(outfile))
    assert list(maxes) == ["conv1", "fc8", "prob"] and maxes["conv1"].n_top == 9
    assert images.paths == sorted(images.paths) and len(images) == N_PHOTOS + 1 and images.labels == [-1] * 8
    assert (maxes["fc8"].images[:, -2:] == -1).all()  # 7 readable images, N 9: two empty slots


def test_brave_overwrites(photos, tmp_path):
    root, _ = photos
    outfile = tmp_path / "maxes.pkl"
    outfile.write_text("old")
    assert run("--model", "tiny_test", "--brave", str(root), str(outfile)) == 0
    assert load_maxes(str(outfile))[0]["format"] == "dvtoolbox-max-tracker"


BAD_INPUTS = [
    (["--N", "0"], "--N"),
    (["--batch-size", "0"], "--batch-size"),
    (["--workers", "-1"], "--workers"),
    (["--layers", "conv1,,fc8"], "--layers"),
    (["--layers", "nosuch"], "nosuch"),
    (["--layers", "conv1,conv1"], "--layers"),
    (["--precision", "fp8"], "--precision"),
    (["--layout", "conv1=NTC"], "conv1"),
    (["--layout", "conv1=NTC:grid=x2"], "--layout 'conv1=NTC:grid=x2': grid is HxW"),
    (["--checkpoint-every", "-1"], "--checkpoint-every must be an integer >= 0, got -1"),
    (["--device", "tpu"], "--device must be cpu, cuda or cuda:N"),
    (["--model", "nope"], "--model 'nope' is unknown"),
    (["--model", "tests.models.user_models_broken:factory"], "--model tests.models.user_models_broken:factory: "
                                                              "cannot import"),
    (["--model", "tests.models.user_models:raises"], "raises() raised ValueError: no weights for this size"),
    (["--model", "tests.models.user_models:not_a_module"], "not_a_module() returned a int, not an nn.Module"),
    (["--model", "nowhere/net.pt"], "--model 'nowhere/net.pt': no such file"),
    (["--model", "efficientnet_lite0", "--model-weights", "nowhere.pth"], "weights file 'nowhere.pth' does not exist"),
    (["--input-mean", "(1e400,0,0)"], "--input-mean must be 3 finite numbers"),
    (["--input-std", "(nan,1,1)"], "--input-std: '(nan,1,1)' is not a Python literal"),
    (["--hist-bins", "-1"], "--hist-bins"),
    (["--hist-bins", "1"], "--hist-bins"),
    (["--hist-bins", "1025"], "--hist-bins"),
    (["--hist-bins", "100000000000000000000000"], "--hist-bins"),
    (["--hist-bins", "nan"], "--hist-bins"),
    (["--hist-bins", "2.5"], "--hist-bins"),
]
BAD_PATHS = [
    ("one path", lambda d, t: [str(d)], "got 1 paths"),
    ("four paths", lambda d, t: [str(d), "a", "b", "c"], "got 4 paths"),
    ("missing filelist", lambda d, t: [str(d), str(t / "none.txt"), str(t / "m.pkl")], "filelist"),
    ("datadir not a folder", lambda d, t: [str(t / "nowhere"), str(t / "m.pkl")], "datadir"),
    ("outfile exists", lambda d, t: [str(d), str(t / "list.txt")], "--brave"),
    ("outfile under a file", lambda d, t: [str(d), str(t / "list.txt" / "sub" / "m.pkl")],
     "cannot write results to folder"),
]


@pytest.mark.parametrize("flags, named", BAD_INPUTS, ids=[" ".join(f) for f, _ in BAD_INPUTS])
def test_bad_flags_are_one_line_and_write_nothing(photos, tmp_path, capsys, flags, named):
    root, _ = photos
    before = folder_state(tmp_path)
    assert run("--model", "tiny_test", *flags, str(root), str(tmp_path / "m.pkl")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("find_max_acts.py: error: ") and named in err
    assert folder_state(tmp_path) == before


@pytest.mark.parametrize("_, paths, named", BAD_PATHS, ids=[b[0] for b in BAD_PATHS])
def test_bad_paths_are_one_line_and_write_nothing(photos, tmp_path, capsys, _, paths, named):
    root, _names = photos
    before = folder_state(tmp_path)
    assert run("--model", "tiny_test", *paths(root, tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err
    assert folder_state(tmp_path) == before


def test_the_five_path_form_is_a_caffe_net_only(photos, tmp_path, capsys):
    root, _ = photos
    assert run("--model", "tiny_test", "a.prototxt", "b.caffemodel", str(root), "list.txt", "m.pkl") == 2
    assert "--model" in capsys.readouterr().err
    assert not os.path.exists("m.pkl")
