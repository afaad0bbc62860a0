"""find_max_acts.py and crop_max_patches.py on tar shards (webdataset's layout): exactly the top N and the crops of
the same images in a folder with the equivalent filelist; resume; the bad shard inputs."""

import io
import os
import shutil
import tarfile

import numpy as np
import pytest
from PIL import Image

from dvtoolbox.cli.crop_max_patches import main as crop_main
from dvtoolbox.cli.find_max_acts import main as find_main
from dvtoolbox.exemplars import tracker as tracker_module
from dvtoolbox.exemplars.tracker import load_maxes
from tests.folder_state import folder_state

PHOTOS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "images")


def image_bytes(seed, size, fmt):
    rgb = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format=fmt)
    return out.getvalue()


def photo(name):
    with open(os.path.join(PHOTOS, name), "rb") as handle:
        return handle.read()


def write_tar(path, members):
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def shard_members():
    """Three shards of samples: photographs and tiny generated images, some with .cls, one with three images (its
    jpg is read), a damaged image, samples without an image, a member that is no sample's."""
    return {
        "train-000000.tar": [
            ("n01440764/img_00001.jpg", photo("ILSVRC2012_val_00006451.jpg")), ("n01440764/img_00001.cls", b"3\n"),
            ("n01440764/img_00002.png", image_bytes(1, (8, 8), "PNG")),
            ("multi.png", image_bytes(2, (8, 8), "PNG")), ("multi.jpg", image_bytes(3, (11, 9), "JPEG")),
            ("multi.bmp", image_bytes(4, (8, 8), "BMP")), ("multi.cls", b"1"),
            ("meta.json", b"{\"not\": \"an image\"}"),
        ],
        "train-000001.tar": [
            ("broken.jpg", b"not a jpeg at all"), ("broken.cls", b"2"),
            ("n02/photo.jpg", photo("ILSVRC2012_val_00006491.jpg")), ("n02/photo.cls", b"0"),
            ("README", b"no dot: no sample"),
            ("n02/tiny.ppm", image_bytes(5, (10, 13), "PPM")), ("n02/tiny.cls", b"4"),
            ("n02/caption.txt", b"text alone"),
        ],
        "train-000002.tar": [
            ("x/a.bmp", image_bytes(6, (8, 8), "BMP")),
            ("x/b.webp", image_bytes(7, (9, 9), "WEBP")), ("x/b.cls", b"1"),
            ("x/c.png", photo("ILSVRC2012_val_00016655.jpg")),  # a JPEG named .png: Pillow reads the content
        ],
    }


EXPECTED = [  # (path in the tracker file, label), in list order
    ("train-000000.tar/n01440764/img_00001.jpg", 3), ("train-000000.tar/n01440764/img_00002.png", -1),
    ("train-000000.tar/multi.jpg", 1), ("train-000001.tar/broken.jpg", 2), ("train-000001.tar/n02/photo.jpg", 0),
    ("train-000001.tar/n02/tiny.ppm", 4), ("train-000002.tar/x/a.bmp", -1), ("train-000002.tar/x/b.webp", 1),
    ("train-000002.tar/x/c.png", -1),
]


@pytest.fixture
def datasets(tmp_path):
    """(shards folder, flat folder, its filelist): the same images as tar shards and as files."""
    shards, flat = tmp_path / "shards", tmp_path / "flat"
    contents = {}
    for shard, members in shard_members().items():
        write_tar(shards / shard, members)
        contents.update({f"{shard}/{name}": data for name, data in members})
    for path, _ in EXPECTED:
        target = flat / path.replace(".tar/", "/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(contents[path])
    filelist = tmp_path / "list.txt"
    filelist.write_text("".join(f"{p.replace('.tar/', '/')} {label}\n" for p, label in EXPECTED))
    return shards, flat, filelist


def find(*argv, workers="0"):
    try:
        return find_main(["--device", "cpu", "--workers", workers, "--model", "tiny_test", *argv])
    except SystemExit as exc:
        return exc.code


def crop(*argv):
    try:
        return crop_main(["--device", "cpu", *argv])
    except SystemExit as exc:
        return exc.code


def assert_same_maxes(path_a, path_b):
    meta_a, _, maxes_a = load_maxes(str(path_a))
    meta_b, _, maxes_b = load_maxes(str(path_b))
    assert list(maxes_a) == list(maxes_b)
    assert (meta_a["images_done"], meta_a["unreadable"]) == (meta_b["images_done"], meta_b["unreadable"])
    for name in maxes_a:
        np.testing.assert_array_equal(maxes_a[name].values, maxes_b[name].values)
        np.testing.assert_array_equal(maxes_a[name].images, maxes_b[name].images)
        np.testing.assert_array_equal(maxes_a[name].positions, maxes_b[name].positions)


@pytest.mark.parametrize("form", ["pattern", "folder"])
def test_shards_give_the_top_n_of_the_same_images_in_a_folder(datasets, tmp_path, form):
    shards, flat, filelist = datasets
    assert find("--N", "4", "--layers", "conv1,fc8", "--batch-size", "3", str(flat), str(filelist),
                str(tmp_path / "flat.npz")) == 0
    datadir = str(shards / "train-{000000..000002}.tar") if form == "pattern" else str(shards)
    assert find("--N", "4", "--layers", "conv1,fc8", "--batch-size", "3", datadir, str(tmp_path / "tar.npz"),
                workers="1" if form == "pattern" else "0") == 0
    meta, images, maxes = load_maxes(str(tmp_path / "tar.npz"))
    assert list(zip(images.paths, images.labels)) == EXPECTED
    assert meta["dataset"]["kind"] == "tar" and meta["dataset"]["root"] == str(shards)
    assert meta["unreadable"] == 1 and 3 not in maxes["conv1"].images  # the damaged image, skipped and counted
    assert_same_maxes(tmp_path / "tar.npz", tmp_path / "flat.npz")
    assert (maxes["fc8"].images >= 0).all()  # 8 readable images fill every unit's top 4


def test_one_shard_alone(datasets, tmp_path):
    shards, _, _ = datasets
    assert find("--N", "2", "--layers", "fc8", str(shards / "train-000001.tar"), str(tmp_path / "one.npz")) == 0
    _, images, _ = load_maxes(str(tmp_path / "one.npz"))
    assert list(zip(images.paths, images.labels)) == EXPECTED[3:6]


def info_rows(path):
    """info.txt rows without the filename column (the tar run names members, the folder run files)."""
    lines = path.read_text().splitlines()
    return lines[0], [line.rsplit(" ", 1)[0] for line in lines[1:]], [line.rsplit(" ", 1)[1] for line in lines[1:]]


def test_crop_max_patches_writes_the_same_crops_from_moved_shards(datasets, tmp_path):
    shards, flat, filelist = datasets
    assert find("--N", "3", "--layers", "conv1,fc8", str(flat), str(filelist), str(tmp_path / "flat.npz")) == 0
    assert find("--N", "3", "--layers", "conv1,fc8", str(shards / "train-{000000..000002}.tar"),
                str(tmp_path / "tar.npz")) == 0
    moved = tmp_path / "elsewhere" / "shards"
    shutil.move(str(shards), str(moved))
    for layer in ("conv1", "fc8"):
        assert crop("--do-maxes", "--do-backprop", "--do-info", str(tmp_path / "flat.npz"), str(flat),
                    str(filelist), str(tmp_path / "out_flat"), layer) == 0
        assert crop("--do-maxes", "--do-backprop", "--do-info", str(tmp_path / "tar.npz"), str(moved),
                    str(tmp_path / "out_tar"), layer) == 0
    written = sorted(os.path.relpath(os.path.join(r, n), tmp_path / "out_tar")
                     for r, _, ns in os.walk(tmp_path / "out_tar") for n in ns)
    assert len(written) == 9 * 7 and written == sorted(
        os.path.relpath(os.path.join(r, n), tmp_path / "out_flat") for r, _, ns in os.walk(tmp_path / "out_flat")
        for n in ns)
    for name in written:
        a, b = tmp_path / "out_tar" / name, tmp_path / "out_flat" / name
        if name.endswith(".png"):
            assert a.read_bytes() == b.read_bytes(), name
        else:
            head_a, rows_a, files_a = info_rows(a)
            head_b, rows_b, files_b = info_rows(b)
            assert (head_a, rows_a) == (head_b, rows_b)
            assert files_a == [EXPECTED[int(r.split()[2])][0] for r in rows_a]  # the tracker's paths
    # the same shards named by a pattern or one .tar file find the images again
    assert crop("--do-info", "--idx-end", "1", "--brave", str(tmp_path / "tar.npz"),
                str(moved / "train-{000000..000002}.tar"), str(tmp_path / "out_tar"), "fc8") == 0


class Interrupt(KeyboardInterrupt):
    pass


def test_resume_on_shards_counts_each_image_once(datasets, tmp_path, monkeypatch):
    shards, _, _ = datasets
    args = ("--N", "3", "--layers", "conv1,fc8", "--batch-size", "2")
    assert find(*args, str(shards), str(tmp_path / "whole.npz")) == 0
    original = tracker_module.MaxesTracker.update
    seen = []

    def update(self, outputs, image_indices):
        if len(seen) == 2:
            raise Interrupt()
        seen.append(image_indices.tolist())
        original(self, outputs, image_indices)

    monkeypatch.setattr(tracker_module.MaxesTracker, "update", update)
    outfile = tmp_path / "maxes.npz"
    assert find(*args, "--checkpoint-every", "2", str(shards), str(outfile)) == 130
    assert load_maxes(str(tmp_path / "maxes.npz.part"))[0]["images_done"] == 4
    seen.clear()

    def counted(self, outputs, image_indices):
        seen.append(image_indices.tolist())
        original(self, outputs, image_indices)

    monkeypatch.setattr(tracker_module.MaxesTracker, "update", counted)
    assert find(*args, "--resume", str(shards / "train-{000000..000002}.tar"), str(outfile)) == 0
    assert seen == [[4, 5], [6, 7], [8]]
    assert_same_maxes(outfile, tmp_path / "whole.npz")


def test_resume_refuses_a_checkpoint_of_rewritten_shards(datasets, tmp_path, monkeypatch, capsys):
    """Same member names, other contents: the list digest covers each member's offset and size."""
    shards, _, _ = datasets
    monkeypatch.setattr(tracker_module.MaxesTracker, "update", _interrupt_after(2))
    outfile = tmp_path / "maxes.npz"
    assert find("--batch-size", "2", "--checkpoint-every", "1", str(shards), str(outfile)) == 130
    monkeypatch.undo()
    assert load_maxes(str(tmp_path / "maxes.npz.part"))[0]["images_done"] == 4
    members = shard_members()["train-000002.tar"]
    members[0] = ("x/a.bmp", image_bytes(6, (9, 9), "BMP"))  # another size, same name
    write_tar(shards / "train-000002.tar", members)
    capsys.readouterr()
    assert find("--batch-size", "2", "--resume", str(shards), str(outfile)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "another images" in err


def _interrupt_after(batches):
    original = tracker_module.MaxesTracker.update
    done = []

    def update(self, outputs, image_indices):
        if len(done) == batches:
            raise Interrupt()
        done.append(1)
        original(self, outputs, image_indices)
    return update


def damaged_header(path):
    write_tar(path, [("a.png", image_bytes(1, (8, 8), "PNG")), ("b.png", image_bytes(2, (8, 8), "PNG"))])
    with tarfile.open(path) as tar:
        second = tar.getmembers()[1].offset
    data = bytearray(path.read_bytes())
    data[second + 100:second + 108] = b"garbage!"
    path.write_bytes(bytes(data))


def bad_label(path):
    write_tar(path, [("a.png", image_bytes(1, (8, 8), "PNG")), ("a.cls", b"cat")])


def gzipped(path):
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("a.png")
        data = image_bytes(1, (8, 8), "PNG")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


BAD_SHARDS = [  # (id, make the input under tmp_path -> datadir, text the one line holds)
    ("pattern matching no file", lambda t: str(t / "shards" / "none-{000000..000003}.tar"), "do not exist"),
    ("pattern missing one file", lambda t: str(t / "shards" / "train-{000000..000003}.tar"), "1 of which"),
    ("unbalanced braces", lambda t: str(t / "shards" / "train-{000000..000002.tar"), "braces"),
    ("empty tar", lambda t: str(write_tar(t / "empty.tar", [])), "hold no image"),
    ("tar without images", lambda t: str(write_tar(t / "noimg.tar", [("a.json", b"{}"), ("a.cls", b"1")])),
     "hold no image"),
    ("not a tar", lambda t: (t / "text.tar").write_text("hello\n" * 200) and str(t / "text.tar"),
     "not an uncompressed tar file"),
    ("zero bytes", lambda t: (t / "zero.tar").write_bytes(b"") or str(t / "zero.tar"), "not an uncompressed tar"),
    ("gzipped tar", lambda t: gzipped(t / "g.tar.gz") or str(t / "g.tar.gz"), "not an uncompressed tar"),
    ("damaged header", lambda t: damaged_header(t / "dmg.tar") or str(t / "dmg.tar"), "damaged header"),
    ("label not an integer", lambda t: bad_label(t / "lab.tar") or str(t / "lab.tar"), "not an integer"),
    ("shards beside images", lambda t: (t / "shards" / "p.png").write_bytes(b"x") and str(t / "shards"),
     "both .tar shards and image files"),
]


@pytest.mark.parametrize("_, make, named", BAD_SHARDS, ids=[b[0] for b in BAD_SHARDS])
def test_bad_shards_are_one_line_and_write_nothing(datasets, tmp_path, capsys, _, make, named):
    datadir = make(tmp_path)
    before = folder_state(tmp_path)
    assert find("--layers", "fc8", datadir, str(tmp_path / "m.npz")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("find_max_acts.py: error: ") and named in err, err
    assert "datadir" in err
    assert folder_state(tmp_path) == before


def test_a_filelist_with_shards_is_refused(datasets, tmp_path, capsys):
    shards, _, filelist = datasets
    before = folder_state(tmp_path)
    assert find(str(shards / "train-000000.tar"), str(filelist), str(tmp_path / "m.npz")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "give no filelist" in err
    assert folder_state(tmp_path) == before


BAD_CROPS = [  # (id, datadir and filelist -> paths, text the one line holds)
    ("a filelist", lambda s, t: [str(s), str(t / "list.txt")], "give no filelist"),
    ("shards missing", lambda s, t: [str(t / "flat")], "holds no .tar file"),
    ("one shard only", lambda s, t: [str(s / "train-000000.tar")], "is in no tar shard"),
    ("member missing", lambda s, t: [str(t / "other")], "has no member"),
]


@pytest.mark.parametrize("_, paths, named", BAD_CROPS, ids=[b[0] for b in BAD_CROPS])
def test_crop_bad_shard_inputs_are_one_line_and_write_nothing(datasets, tmp_path, capsys, _, paths, named):
    shards, _, _ = datasets
    assert find("--N", "9", "--layers", "fc8", str(shards), str(tmp_path / "tar.npz")) == 0
    other = tmp_path / "other"
    for shard, members in shard_members().items():  # the same shard names, one member renamed
        write_tar(other / shard, [(n.replace("x/c.png", "x/d.png"), d) for n, d in members])
    capsys.readouterr()
    before = folder_state(tmp_path)
    assert crop("--do-info", str(tmp_path / "tar.npz"), *paths(shards, tmp_path), str(tmp_path / "out"),
                "fc8") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("crop_max_patches.py: error: ") and named in err, err
    assert folder_state(tmp_path) == before
