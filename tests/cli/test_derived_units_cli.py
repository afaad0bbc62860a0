"""find_max_acts.py --unit / --directions, then crop_max_patches.py on the derived groups, on the tiny fixed-weight
model: the tracker file against a brute-force numpy computation, the crops against a numpy restatement, the bad
inputs (one line, exit status 2, nothing written)."""

import hashlib
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from dvtoolbox.cli.crop_max_patches import main as crop_main
from dvtoolbox.cli.find_max_acts import main as find_main
from dvtoolbox.exemplars import tracker as tracker_module
from dvtoolbox.exemplars.tracker import load_maxes
from tests.cli.test_crop_max_patches_cli import expected_maxim, files_under, model_input
from tests.conftest import make_tiny
from tests.folder_state import folder_state

N_PHOTOS = 7
DIRECTIONS = np.array([[1.0, -0.5, 0.25, 2.0], [0.0, 1.0, 1.0, 0.0], [-1.0, 0.0, 0.5, 0.0]], np.float32)


@pytest.fixture
def photos(tmp_path):
    """datadir with 7 seeded photographs (two the same: a tie), a filelist, and a (3, 4) directions file."""
    root = tmp_path / "data"
    root.mkdir()
    rng = np.random.default_rng(21)
    names = []
    for i in range(N_PHOTOS):
        pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        if i == 5:
            pixels = np.asarray(Image.open(root / names[1]))
        Image.fromarray(pixels).save(root / f"p{i}.png")
        names.append(f"p{i}.png")
    (tmp_path / "list.txt").write_text("".join(f"{n} {i % 2}\n" for i, n in enumerate(names)))
    np.save(tmp_path / "dirs.npy", DIRECTIONS)
    return root, names


def find(*argv):
    try:
        return find_main(["--device", "cpu", "--workers", "0", "--model", "tiny_test", *argv])
    except SystemExit as exc:
        return exc.code


def crop(*argv):
    try:
        return crop_main(["--device", "cpu", "--model", "tiny_test", *argv])
    except SystemExit as exc:
        return exc.code


def tiny_acts(root, names):
    """conv1 (I, 4, 8, 8) and fc8 (I, 5) of every photograph, float64."""
    model = make_tiny()
    x = torch.stack([torch.from_numpy(model_input(root, n)) for n in names])
    with torch.no_grad():
        return model.conv1(x / 64.0).double().numpy(), model(x).double().numpy()


def ranked(per_image, n):
    """per_image (I,) values -> (values, images) of the top n, value descending then image ascending."""
    order = sorted(range(len(per_image)), key=lambda i: (-per_image[i], i))[:n]
    return per_image[order], np.array(order)


def test_directions_and_sums_equal_brute_force(photos, tmp_path):
    root, names = photos
    out = tmp_path / "m.npz"
    assert find("--N", "4", "--batch-size", "3", "--layers", "conv1", "--directions",
                f"dirs=conv1:{tmp_path / 'dirs.npy'}", "--unit", "pair=conv1:1 + conv1:2",
                "--unit", "mix=conv1:0 + 2 * fc8:3 - conv1:1:2:5", str(root), str(tmp_path / "list.txt"),
                str(out)) == 0
    meta, _, maxes = load_maxes(str(out))
    assert [(e["name"], e["kind"], e["units"]) for e in meta["layers"]] == [
        ("conv1", "conv", 4), ("pair", "conv", 1), ("mix", "fc", 1), ("dirs", "conv", 3)]
    derived = {e["name"]: e for e in meta["derived"]}
    assert derived["dirs"]["sha256"] == hashlib.sha256((tmp_path / "dirs.npy").read_bytes()).hexdigest()
    assert derived["dirs"]["layer"] == "conv1" and derived["dirs"]["product"] == "dot"
    assert derived["pair"]["mode"] == "virtual_channel" and derived["mix"]["mode"] == "per_image"
    with np.load(out, allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["weights/dirs"], DIRECTIONS)
        np.testing.assert_array_equal(npz["weights/pair"], [[0, 1, 1, 0]])
        assert "weights/mix" not in npz.files
    conv, fc = tiny_acts(root, names)
    projected = np.einsum("kc,ichw->ikhw", DIRECTIONS.astype(np.float64), conv).reshape(len(names), 3, -1)
    for k in range(3):
        values, images = ranked(projected[:, k].max(1), 4)
        np.testing.assert_allclose(maxes["dirs"].values[k], values, rtol=1e-5)
        np.testing.assert_array_equal(maxes["dirs"].images[k], images)
        positions = [divmod(int(projected[i, k].argmax()), 8) for i in images]
        np.testing.assert_array_equal(maxes["dirs"].positions[k], positions)
    pair = (conv[:, 1] + conv[:, 2]).reshape(len(names), -1)
    values, images = ranked(pair.max(1), 4)
    np.testing.assert_allclose(maxes["pair"].values[0], values, rtol=1e-5)
    np.testing.assert_array_equal(maxes["pair"].images[0], images)
    mix = conv[:, 0].reshape(len(names), -1).max(1) + 2 * fc[:, 3] - conv[:, 1, 2, 5]
    values, images = ranked(mix, 4)
    np.testing.assert_allclose(maxes["mix"].values[0], values, rtol=1e-5)
    np.testing.assert_array_equal(maxes["mix"].images[0], images)
    # the duplicate photograph (5 is 1) ties with it everywhere: 1 ranks first wherever both are in the top N
    tied = 0
    for m in (maxes["dirs"], maxes["pair"], maxes["mix"]):
        for unit in range(m.units):
            row = list(m.images[unit])
            if 1 in row and 5 in row:
                assert row.index(5) == row.index(1) + 1 and m.values[unit, row.index(1)] == m.values[unit, row.index(5)]
                tied += 1
    assert tied >= 2


def test_units_alone_track_only_the_units(photos, tmp_path):
    root, _ = photos
    out = tmp_path / "m.npz"
    assert find("--N", "2", "--unit", "s=fc8:1 - fc8:0", str(root), str(out)) == 0
    meta, _, maxes = load_maxes(str(out))
    assert list(maxes) == ["s"] and maxes["s"].kind == "fc" and meta["layouts"] == {"fc8": "NC"}


def test_crop_max_patches_on_derived_units(photos, tmp_path):
    """The crops of a direction of conv1 are conv1's fields at the recorded positions; a per-image sum's crop is the
    whole input; the .npy is not needed any more; info.txt as the tracker file says; backprop images written."""
    root, names = photos
    nmt = tmp_path / "m.npz"
    assert find("--N", "3", "--directions", f"dirs=conv1:{tmp_path / 'dirs.npy'}",
                "--unit", "mix=conv1:0 + 2 * fc8:3", str(root), str(nmt)) == 0
    (tmp_path / "dirs.npy").unlink()
    out = tmp_path / "out"
    assert crop("--do-maxes", "--do-info", "--do-backprop", "--do-backprop-norm", "--idx-begin", "1",
                str(nmt), str(root), str(out), "dirs") == 0
    assert files_under(out) == [f"dirs/unit_{u:04d}/{f}" for u in (1, 2) for f in
                                [f"backprop_{r:03d}.png" for r in range(3)] +
                                [f"backpropnorm_{r:03d}.png" for r in range(3)] + ["info.txt"] +
                                [f"maxim_{r:03d}.png" for r in range(3)]]
    dirs = load_maxes(str(nmt))[2]["dirs"]
    for unit in (1, 2):
        lines = (out / f"dirs/unit_{unit:04d}/info.txt").read_text().splitlines()[1:]
        for rank, line in enumerate(lines):
            image = int(dirs.images[unit, rank])
            y, xx = (int(v) for v in dirs.positions[unit, rank])
            assert line == "1 %.6f %d -1 %d %d %s" % (dirs.values[unit, rank], image, y, xx, names[image])
            saved = np.asarray(Image.open(out / f"dirs/unit_{unit:04d}/maxim_{rank:03d}.png"), np.float64) / 255
            np.testing.assert_allclose(saved, expected_maxim(model_input(root, names[image]), y, xx),
                                       atol=0.5 / 255 + 1e-9)
            backprop = np.asarray(Image.open(out / f"dirs/unit_{unit:04d}/backprop_{rank:03d}.png"))
            assert backprop.shape == (3, 3, 3) and backprop.std() > 0
    assert crop("--do-maxes", "--do-deconv", "--do-info", str(nmt), str(root), str(out), "mix") == 0
    mix = load_maxes(str(nmt))[2]["mix"]
    lines = (out / "mix/unit_0000/info.txt").read_text().splitlines()[1:]
    assert lines == ["0 %.6f %d -1 %s" % (mix.values[0, r], mix.images[0, r], names[mix.images[0, r]])
                     for r in range(3)]
    x = model_input(root, names[mix.images[0, 0]]).astype(np.float64)
    whole = np.clip((x / (max(2 * x.max(), -2 * x.min()) + 1e-10) + 0.5).transpose(1, 2, 0), 0, 1)
    saved = np.asarray(Image.open(out / "mix/unit_0000/maxim_000.png"), np.float64) / 255
    np.testing.assert_allclose(saved, whole, atol=0.5 / 255 + 1e-9)
    assert np.asarray(Image.open(out / "mix/unit_0000/deconv_000.png")).shape == (8, 8, 3)


def test_a_direction_below_the_first_relu_has_no_deconv(photos, tmp_path, capsys):
    root, _ = photos
    nmt = tmp_path / "m.npz"
    assert find("--N", "2", "--directions", f"d=conv1:{tmp_path / 'dirs.npy'}", str(root), str(nmt)) == 0
    before = folder_state(tmp_path)
    capsys.readouterr()
    assert crop("--do-deconv", str(nmt), str(root), str(tmp_path / "o"), "d") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "deconv needs ReLUs" in err
    assert folder_state(tmp_path) == before


def _npy(t, array, name="bad.npy"):
    np.save(t / name, array, allow_pickle=True)
    return f"d=conv1:{t / name}"


def _pickled(t):
    (t / "pickled.npy").write_bytes(b"")
    np.save(t / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return f"d=conv1:{t / 'pickled.npy'}"


def _npz(t):
    np.savez(t / "two.npz", a=np.ones(4))
    return f"d=conv1:{t / 'two.npz'}"


def _python_pickle(t):
    (t / "p.npy").write_bytes(pickle.dumps(np.ones(4)))
    return f"d=conv1:{t / 'p.npy'}"


BAD = [
    ("unit NAME a layer", lambda t: ["--unit", "conv1=fc8:1"], "--unit"),
    ("directions NAME a layer", lambda t: ["--directions", f"fc8=conv1:{t / 'dirs.npy'}"], "--directions"),
    ("NAME twice", lambda t: ["--unit", "s=fc8:1", "--directions", f"s=conv1:{t / 'dirs.npy'}"], "twice"),
    ("empty unit NAME", lambda t: ["--unit", "=fc8:1"], "--unit"),
    ("empty directions NAME", lambda t: ["--directions", f"=conv1:{t / 'dirs.npy'}"], "--directions"),
    ("NAME with a slash", lambda t: ["--unit", "a/b=fc8:1"], "--unit"),
    ("no EXPR", lambda t: ["--unit", "s="], "--unit"),
    ("product of terms", lambda t: ["--unit", "s=fc8:1 * fc8:2"], "--unit"),
    ("a constant", lambda t: ["--unit", "s=fc8:1 + 1"], "--unit"),
    ("division by a term", lambda t: ["--unit", "s=2 / fc8:1"], "--unit"),
    ("@batch", lambda t: ["--unit", "s=fc8:1@0"], "--unit"),
    ("a number", lambda t: ["--unit", "s=3"], "--unit"),
    ("malformed", lambda t: ["--unit", "s=fc8: + "], "--unit"),
    ("terms cancel", lambda t: ["--unit", "s=fc8:1 - fc8:1"], "--unit"),
    ("unknown layer", lambda t: ["--unit", "s=nosuch:1"], "--unit"),
    ("channel out of range", lambda t: ["--unit", "s=fc8:5"], "--unit"),
    ("position off the grid", lambda t: ["--unit", "s=conv1:0:8:0"], "--unit"),
    ("position on an fc layer", lambda t: ["--unit", "s=fc8:0:0:0"], "--unit"),
    ("token on a conv layer", lambda t: ["--unit", "s=conv1:0:3"], "--unit"),
    ("npy pickled", _pickled, "--directions"),
    ("npy a Python pickle", _python_pickle, "--directions"),
    ("npz archive", _npz, "--directions"),
    ("npy wrong C", lambda t: ["--directions", _npy(t, np.ones((2, 5), np.float32))], "5 columns"),
    ("npy NaN", lambda t: ["--directions", _npy(t, np.array([1.0, np.nan, 0, 0]))], "NaN"),
    ("npy integers", lambda t: ["--directions", _npy(t, np.ones(4, np.int64))], "--directions"),
    ("npy 3-D", lambda t: ["--directions", _npy(t, np.ones((1, 1, 4)))], "--directions"),
    ("npy empty", lambda t: ["--directions", _npy(t, np.ones((0, 4)))], "--directions"),
    ("missing file", lambda t: ["--directions", f"d=conv1:{t / 'none.npy'}"], "--directions"),
    ("no LAYER", lambda t: ["--directions", f"d={t / 'dirs.npy'}"], "--directions"),
    ("unknown LAYER", lambda t: ["--directions", f"d=nosuch:{t / 'dirs.npy'}"], "--directions"),
]


@pytest.mark.parametrize("case, flags, named", BAD, ids=[b[0] for b in BAD])
def test_bad_inputs_are_one_line_and_write_nothing(photos, tmp_path, capsys, case, flags, named):
    root, _ = photos
    argv = flags(tmp_path)
    if not isinstance(argv, list):
        argv = ["--directions", argv]
    before = folder_state(tmp_path)
    capsys.readouterr()
    assert find("--N", "2", *argv, str(root), str(tmp_path / "m.npz")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("find_max_acts.py: error: ") and named in err, err
    assert folder_state(tmp_path) == before


class Interrupt(KeyboardInterrupt):
    pass


def test_resume_takes_up_derived_units_and_refuses_another_matrix(photos, tmp_path, capsys, monkeypatch):
    """The checkpoint records each group's definition (the matrix's sha256): --resume with another .npy is refused
    in one line; with the same one it takes up and equals the uninterrupted run."""
    root, _ = photos
    flags = ["--N", "2", "--batch-size", "2", "--directions", f"d=conv1:{tmp_path / 'dirs.npy'}",
             "--unit", "m=conv1:0 + fc8:1"]
    assert find(*flags, str(root), str(tmp_path / "whole.npz")) == 0
    original = tracker_module.MaxesTracker.update
    calls = []

    def update(self, outputs, image_indices):
        if len(calls) == 2:
            raise Interrupt()
        calls.append(1)
        original(self, outputs, image_indices)

    monkeypatch.setattr(tracker_module.MaxesTracker, "update", update)
    out = tmp_path / "m.npz"
    assert find(*flags, "--checkpoint-every", "1", str(root), str(out)) == 130
    monkeypatch.setattr(tracker_module.MaxesTracker, "update", original)
    np.save(tmp_path / "other.npy", DIRECTIONS * 2)
    before = folder_state(tmp_path)
    capsys.readouterr()
    other = ["--N", "2", "--batch-size", "2", "--directions", f"d=conv1:{tmp_path / 'other.npy'}",
             "--unit", "m=conv1:0 + fc8:1", "--resume"]
    assert find(*other, str(root), str(out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "derived" in err
    assert folder_state(tmp_path) == before
    assert find(*flags, "--resume", str(root), str(out)) == 0
    whole, resumed = load_maxes(str(tmp_path / "whole.npz")), load_maxes(str(out))
    assert whole[0]["derived"] == resumed[0]["derived"]
    for name in ("d", "m"):
        for key in ("values", "images", "positions"):
            np.testing.assert_array_equal(getattr(whole[2][name], key), getattr(resumed[2][name], key))
    with np.load(out, allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["weights/d"], DIRECTIONS)
