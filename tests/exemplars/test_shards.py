"""exemplars.shards: brace patterns, the tar index against tarfile's own reading, samples and their image and label,
damaged and truncated shards, and what datadir names."""

import io
import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from dvtoolbox.errors import UsageError
from dvtoolbox.exemplars.data import TarMember, read_member, read_rgb
from dvtoolbox.exemplars.shards import (expand_braces, index_shard, plain_index, read_shards, sample_image,
                                        samples, shard_files, tarfile_index)


def write_tar(path, members, fmt=tarfile.USTAR_FORMAT):
    """members: (name, bytes) in order."""
    with tarfile.open(path, "w", format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def png_bytes(seed, size=(5, 7), fmt="PNG"):
    rgb = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format=fmt)
    return out.getvalue(), rgb


@pytest.mark.parametrize("pattern, expected", [
    ("s/t-{000000..000002}.tar", ["s/t-000000.tar", "s/t-000001.tar", "s/t-000002.tar"]),
    ("t-{8..10}.tar", ["t-8.tar", "t-9.tar", "t-10.tar"]),
    ("t-{08..10}.tar", ["t-08.tar", "t-09.tar", "t-10.tar"]),
    ("t-{2..0}.tar", ["t-2.tar", "t-1.tar", "t-0.tar"]),
    ("{a,b}/x-{0..1}.tar", ["a/x-0.tar", "a/x-1.tar", "b/x-0.tar", "b/x-1.tar"]),
    ("plain.tar", ["plain.tar"]),
])
def test_brace_patterns_expand_as_webdataset_writes_them(pattern, expected):
    assert expand_braces(pattern) == expected


@pytest.mark.parametrize("pattern", ["t-{0..2.tar", "t-0..2}.tar", "t-{{0..2}}.tar", "t-{x}.tar", "t-{0..9999999}"])
def test_bad_brace_patterns_are_usage_errors(pattern):
    with pytest.raises(UsageError, match="datadir"):
        expand_braces(pattern)


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_the_index_reads_what_tarfile_extracts(tmp_path, fmt):
    """Every regular member's offset and size give, by seek and read, exactly tarfile's extractfile bytes (long
    names included: GNU and pax headers come before the member's own)."""
    rng = np.random.default_rng(3)
    members = [(("d" * 120 if i == 2 else "d") + f"/k{i}.{ext}", rng.bytes(int(n)))
               for i, (ext, n) in enumerate(zip(["jpg", "cls", "png", "txt", "bmp"], [0, 1, 700, 512, 1500]))]
    path = write_tar(tmp_path / "s.tar", members, fmt)
    entries = index_shard(str(path))
    assert [e[0] for e in entries] == [name for name, _ in members]
    with tarfile.open(path) as tar:
        for name, offset, size in entries:
            assert read_member(str(tmp_path), TarMember("s.tar", offset, size)) == tar.extractfile(name).read()


def test_samples_group_consecutive_keys_and_pick_the_image():
    names = ["a/x.jpg", "a/x.cls", "a/x.png", "b.seg.jpg", "b.json", "README", "a/.hidden.jpg", "c.PNG", "c.webp",
             "a/x.ppm", "d.bmp", "d.ppm", "d.JPEG"]
    entries = [(n, i, 1) for i, n in enumerate(names)]
    got = [(key, sorted(sample), sample_image(sample)) for key, sample in samples(entries)]
    assert got == [
        ("a/x", ["cls", "jpg", "png"], ("a/x.jpg", 0, 1)),
        ("b", ["json", "seg.jpg"], None),  # "seg.jpg" is not the suffix "jpg"
        ("c", ["png", "webp"], ("c.PNG", 7, 1)),  # png before webp, in any case
        ("a/x", ["ppm"], ("a/x.ppm", 9, 1)),  # the same key after another one: another sample
        ("d", ["bmp", "jpeg", "ppm"], ("d.JPEG", 12, 1)),
    ]


def test_read_shards_lists_images_labels_and_members(tmp_path):
    one, rgb_one = png_bytes(1)
    two, rgb_two = png_bytes(2)
    write_tar(tmp_path / "s-0.tar", [("n1/a.png", one), ("n1/a.cls", b" 7\n"), ("meta.json", b"{}")])
    write_tar(tmp_path / "s-1.tar", [("n2/b.cls", b"-2"), ("n2/b.png", two), ("n2/c.txt", b"hi")])
    images = read_shards(str(tmp_path / "s-{0..1}.tar"))
    assert images.paths == ["s-0.tar/n1/a.png", "s-1.tar/n2/b.png"] and images.labels == [7, -2]
    assert images.root == str(tmp_path) and images.description["kind"] == "tar"
    np.testing.assert_array_equal(read_rgb(images, 0), rgb_one)
    np.testing.assert_array_equal(read_rgb(images, 1), rgb_two)
    assert read_shards(str(tmp_path)).paths == images.paths  # the folder of shards
    single = read_shards(str(tmp_path / "s-1.tar"))
    assert single.paths == ["s-1.tar/n2/b.png"] and single.root == str(tmp_path)


def test_a_truncated_shard_keeps_its_members_and_the_cut_one_is_unreadable(tmp_path):
    one, rgb_one = png_bytes(1)
    two, _ = png_bytes(2, (30, 30))
    path = write_tar(tmp_path / "s.tar", [("a.png", one), ("b.png", two)])
    data = path.read_bytes()
    entries = index_shard(str(path))
    path.write_bytes(data[:entries[1][1] + 100])  # cut inside b.png's data
    images = read_shards(str(path))
    assert images.paths == ["s.tar/a.png", "s.tar/b.png"]
    np.testing.assert_array_equal(read_rgb(images, 0), rgb_one)
    with pytest.raises(UsageError, match="truncated"):
        read_rgb(images, 1)


def test_a_damaged_header_is_refused_before_any_work(tmp_path):
    one, _ = png_bytes(1)
    path = write_tar(tmp_path / "s.tar", [("a.png", one), ("b.png", one), ("c.png", one)])
    second = index_shard(str(path))[1][1] - 512  # b.png's header
    data = bytearray(path.read_bytes())
    data[second + 100:second + 108] = b"garbage!"  # its mode field: the checksum no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(UsageError, match="damaged header at byte"):
        read_shards(str(path))


@pytest.mark.parametrize("layout, named", [
    ("missing", "do not exist"),
    ("twice", "twice"),
    ("mixed", "both .tar shards and image files"),
    ("no tars", "no .tar file"),
])
def test_what_datadir_names(tmp_path, layout, named):
    write_tar(tmp_path / "t-0.tar", [("a.jpg", b"x")])
    (tmp_path / "empty").mkdir()
    datadir = {"missing": str(tmp_path / "t-{0..1}.tar"), "twice": str(tmp_path / "t-{0,0}.tar"),
               "mixed": str(tmp_path), "no tars": str(tmp_path / "empty")}[layout]
    if layout == "mixed":
        (tmp_path / "p.png").write_bytes(b"")
    with pytest.raises(UsageError, match=named):
        shard_files(datadir)
    assert shard_files(str(tmp_path / "t-{0..0}.tar")) == (str(tmp_path), ["t-0.tar"])


def test_the_plain_index_equals_tarfile_or_leaves_the_shard_to_it(tmp_path):
    """plain_index == tarfile_index on ustar headers (a prefix-split long name, a folder, a symlink, an old-style
    regular file); None (tarfile reads it) for pax and GNU long-name headers, a truncated or damaged shard."""
    rng = np.random.default_rng(4)
    path = tmp_path / "u.tar"
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, kind, data in [("dir", tarfile.DIRTYPE, b""), ("p" * 90 + "/" + "q" * 90 + ".jpg", tarfile.REGTYPE,
                                 rng.bytes(900)), ("link.jpg", tarfile.SYMTYPE, b""),
                                 ("old.png", tarfile.AREGTYPE, rng.bytes(512)), ("z.cls", tarfile.REGTYPE, b"5")]:
            info = tarfile.TarInfo(name)
            info.type, info.size = kind, len(data)
            if kind == tarfile.SYMTYPE:
                info.linkname = "old.png"
            tar.addfile(info, io.BytesIO(data) if data else None)
    size = os.path.getsize(path)
    plain = plain_index(str(path), size)
    assert plain == tarfile_index(str(path), size) and [e[0] for e in plain] == [
        "p" * 90 + "/" + "q" * 90 + ".jpg", "old.png", "z.cls"]
    long_name = [("d" * 120 + "/k.jpg", b"x")]
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        other = write_tar(tmp_path / f"f{fmt}.tar", long_name, fmt)
        assert plain_index(str(other), os.path.getsize(other)) is None
    data = path.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[:plain[0][1] + 100])
    assert plain_index(str(cut), os.path.getsize(cut)) is None
    damaged = bytearray(data)
    damaged[plain[1][1] - 512 + 100] ^= 1
    cut.write_bytes(bytes(damaged))
    assert plain_index(str(cut), os.path.getsize(cut)) is None


def test_a_label_cut_off_by_a_truncated_shard_is_minus_one(tmp_path):
    one, _ = png_bytes(1)
    path = write_tar(tmp_path / "s.tar", [("a.png", one), ("a.cls", b"12345678")])
    cls_offset = index_shard(str(path))[1][1]
    path.write_bytes(path.read_bytes()[:cls_offset + 3])
    images = read_shards(str(path))
    assert images.paths == ["s.tar/a.png"] and images.labels == [-1]
    write_tar(path, [("a.png", one), ("a.cls", b"1" * 65)])  # longer than any label
    with pytest.raises(UsageError, match="not an integer"):
        read_shards(str(path))
