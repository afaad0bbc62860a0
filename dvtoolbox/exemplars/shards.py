"""Tar shards in webdataset's layout: the image list of one or more ``.tar`` files, each image read alone.

A shard is an uncompressed tar file; a sample is a run of consecutive members whose names share a key: the member
path up to the first dot of its basename (``n01440764/img_00001.jpg`` and ``n01440764/img_00001.cls`` make the sample
``n01440764/img_00001``, suffixes ``jpg`` and ``cls``). As in webdataset, the same key again after another one is
another sample, and a member whose basename has no dot (or starts with one) belongs to no sample.

- The image of a sample: its member whose suffix (everything after the first dot, compared in lower case) comes
  first in ``IMAGE_SUFFIXES`` (jpg, png, jpeg, webp, ppm, bmp: webdataset's own README reads ``to_tuple("jpg;png",
  ...)``, the first of the alternatives that the sample holds; jpeg, webp, ppm and bmp follow). A sample without
  one is not an image: left out of the list (counted in the log), like a folder's other files.
- Its label: the ``cls`` member, an integer in text (webdataset decodes it with ``int(data)``), else -1; a ``cls``
  that is not an integer is a one-line UsageError naming the shard and the member.

The user names shards (``shard_files``): a file (one shard), a folder (the ``.tar`` files at its top level, sorted
by name), or a brace pattern as webdataset writes it (``shards/train-{000000..000099}.tar``, ``{a,b}``), expanded
here (``expand_braces``, never by a shell) in order; every file it names must exist. The list's paths are
``<shard>/<member>``, the shard relative to the root (the file's folder, the folder, or the folder of the pattern
before its first brace): ``train-000003.tar/n01440764/img_00001.jpg``, so that the dataset may move.

Each shard is indexed once (``index_shard``: its tar headers, every regular member's name, data offset and size);
an image is then one seek and one read (``data.read_member``), so DataLoader workers, rank sharding, resume and
crop_max_patches reach any image by its index in the list, as in a folder. A member whose data the end of a
truncated shard cuts off stays in the list and is unreadable when read (skipped and counted); a damaged header (a
whole 512-byte block that is neither a header nor the end-of-archive zeros) is a one-line UsageError before any
work: the members after it cannot be found, and a list that silently lost them would change every later index.
"""

from __future__ import annotations

import logging
import os
import re
import tarfile
from collections import defaultdict
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from dvtoolbox.errors import UsageError
from dvtoolbox.exemplars.data import IMAGE_EXTENSIONS, ImageList, TarMember

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = ("jpg", "png", "jpeg", "webp", "ppm", "bmp")
"""A sample's image: the member with the first of these suffixes that the sample holds (lower case)."""
LABEL_SUFFIX = "cls"
MAX_SHARDS = 1_000_000
MAX_LABEL_BYTES = 64
_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"(-?\d+)\.\.(-?\d+)")

Entry = Tuple[str, int, int]
"""A regular tar member: (name, offset of its data in the shard, size), bytes."""


# ------------------------------------------------------------------------------------------- naming the shards


def is_shard_name(datadir: str) -> bool:
    """``datadir`` names shards by itself: an existing file, or a brace pattern that is not an existing path."""
    return os.path.isfile(datadir) or (not os.path.exists(datadir) and "{" in datadir)


def holds_shards(folder: str) -> bool:
    """``folder`` is a folder with ``.tar`` files at its top level."""
    return os.path.isdir(folder) and bool(_top_level_tars(folder))


def _top_level_tars(folder: str) -> List[str]:
    return sorted(n for n in os.listdir(folder)
                  if n.lower().endswith(".tar") and os.path.isfile(os.path.join(folder, n)))


def expand_braces(pattern: str) -> List[str]:
    """webdataset's shard pattern, expanded left to right: ``{a..b}`` the integers a .. b (either way; zero-padded
    to the wider of a and b when either is written with a leading zero, as ``{000000..000099}``), ``{x,y,z}`` the
    alternatives; several braces multiply, in order. Nested or unbalanced braces, a brace with neither form, or
    more than ``MAX_SHARDS`` names: UsageError naming datadir."""
    match = _BRACE.search(pattern)
    if match is None:
        if "{" in pattern or "}" in pattern:
            raise UsageError(f"datadir {pattern!r}: unbalanced braces in the shard pattern", "datadir")
        return [pattern]
    head, tail = pattern[:match.start()], pattern[match.end():]
    if "{" in head or "}" in head:
        raise UsageError(f"datadir {pattern!r}: nested or unbalanced braces in the shard pattern", "datadir")
    choices = _brace_choices(match.group(1), pattern)
    rest = expand_braces(tail)
    if len(choices) * len(rest) > MAX_SHARDS:
        raise UsageError(f"datadir {pattern!r} names more than {MAX_SHARDS} shards", "datadir")
    return [head + choice + after for choice in choices for after in rest]


def _brace_choices(body: str, pattern: str) -> List[str]:
    numbers = _RANGE.fullmatch(body)
    if numbers:
        first, last = numbers.group(1), numbers.group(2)
        start, stop = int(first), int(last)
        if abs(stop - start) >= MAX_SHARDS:
            raise UsageError(f"datadir {pattern!r} names more than {MAX_SHARDS} shards", "datadir")
        padded = any(len(t.lstrip("-")) > 1 and t.lstrip("-").startswith("0") for t in (first, last))
        width = max(len(first), len(last)) if padded else 0
        step = 1 if stop >= start else -1
        return [str(n).zfill(width) for n in range(start, stop + step, step)]
    if "," in body:
        return body.split(",")
    raise UsageError(f"datadir {pattern!r}: {{{body}}} is no shard range; write {{first..last}} or {{a,b,...}}",
                     "datadir")


def shard_files(datadir: str) -> Tuple[str, List[str]]:
    """(root, shard paths relative to root, in reading order) of what ``datadir`` names (see the module
    docstring). A folder that holds image files beside its .tar files is ambiguous, and refused; so are a pattern
    naming a missing file or one file twice, and a folder without .tar files (UsageErrors naming datadir)."""
    if os.path.isfile(datadir):
        return os.path.dirname(datadir) or ".", [os.path.basename(datadir)]
    if os.path.isdir(datadir):
        names = _top_level_tars(datadir)
        if not names:
            raise UsageError(f"datadir {datadir} holds no .tar file at its top level", "datadir")
        images = sorted(n for n in os.listdir(datadir) if n.lower().endswith(IMAGE_EXTENSIONS))
        if images:
            raise UsageError(f"datadir {datadir} holds both .tar shards and image files ({images[0]}, ...): name the "
                             "shards (a .tar file or a pattern such as shards/train-{000000..000009}.tar), or give "
                             "a filelist", "datadir")
        return datadir, names
    if "{" not in datadir:
        raise UsageError(f"datadir {datadir} does not exist", "datadir")
    paths = expand_braces(datadir)
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise UsageError(f"datadir {datadir!r} names {len(paths)} shard files, {len(missing)} of which do not exist "
                         f"(the first: {missing[0]})", "datadir")
    if len(set(paths)) != len(paths):
        twice = next(p for i, p in enumerate(paths) if p in paths[:i])
        raise UsageError(f"datadir {datadir!r} names the shard {twice} twice", "datadir")
    root = os.path.dirname(datadir[:datadir.index("{")]) or "."
    return root, [os.path.relpath(p, root) for p in paths]


# ------------------------------------------------------------------------------------------- reading a shard


def index_shard(path: str) -> List[Entry]:
    """Every regular member of the tar file ``path``, in order: (name, data offset, size). Not a tar file (or a
    compressed one), or a damaged header: UsageError naming datadir. A shard cut short keeps the members whose
    headers it holds (their data may be short: ``data.read_member`` says so when one is read). A shard of plain
    ustar / GNU headers is read by ``plain_index``; any other (pax or GNU long-name headers, damage, truncation)
    by ``tarfile``."""
    size = os.path.getsize(path)
    plain = plain_index(path, size)
    return plain if plain is not None else tarfile_index(path, size)


_REGULAR = (b"0", b"\0", b"7")  # tarfile's REGTYPE, AREGTYPE, CONTTYPE
_NO_DATA = (b"1", b"2", b"3", b"4", b"5", b"6")  # links, devices, folders, fifos: tarfile skips no data after them
_ZEROS = bytes(tarfile.BLOCKSIZE)


def plain_index(path: str, size: int) -> Optional[List[Entry]]:
    """``tarfile_index`` of a shard whose every header is a plain ustar / GNU header (name, prefix, octal size,
    its checksum right) and that ends with an end-of-archive block, about 3x faster than ``tarfile``
    (one 512-byte read per member, no TarInfo); None where any header or the end is otherwise."""
    entries: List[Entry] = []
    offset = 0
    with open(path, "rb") as handle:
        while True:
            handle.seek(offset)
            block = handle.read(tarfile.BLOCKSIZE)
            if len(block) < tarfile.BLOCKSIZE:
                return None
            if block == _ZEROS:
                return entries
            try:
                checksum = int(_field(block[148:156]).decode("ascii").strip() or "0", 8)
                length = int(_field(block[124:136]).decode("ascii").strip() or "0", 8)
            except ValueError:
                return None
            if checksum != 256 + sum(block[:148]) + sum(block[156:]) or block[124] & 0x80:
                return None
            kind = block[156:157]
            name = os.fsdecode(_field(block[0:100]))
            prefix = os.fsdecode(_field(block[345:500]))
            if kind in _NO_DATA or (kind == b"\0" and name.endswith("/")):
                offset += tarfile.BLOCKSIZE
                continue
            if kind not in _REGULAR or offset + tarfile.BLOCKSIZE + length > size:
                return None
            entries.append((prefix + "/" + name if prefix else name, offset + tarfile.BLOCKSIZE, length))
            offset += tarfile.BLOCKSIZE + -(-length // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def _field(raw: bytes) -> bytes:
    """A tar header's string field: up to its first NUL."""
    end = raw.find(b"\0")
    return raw if end < 0 else raw[:end]


def tarfile_index(path: str, size: int) -> List[Entry]:
    """``index_shard`` through Python's ``tarfile`` (any format it reads), with the damage checks it leaves out."""
    try:
        tar = tarfile.open(path, "r:")
    except (tarfile.TarError, OSError) as exc:
        raise UsageError(f"datadir: {path} is not an uncompressed tar file ({' '.join(str(exc).split())})",
                         "datadir") from None
    entries = []
    with tar:
        while True:
            try:
                info = tar.next()
            except tarfile.ReadError:
                if tar.offset >= size:  # the previous member's data runs past the end: a truncated shard
                    break
                raise _damaged(path, tar.offset) from None
            if info is None:
                break
            if info.isreg() and not info.issparse():
                entries.append((info.name, info.offset_data, info.size))
        end = tar.offset
    with open(path, "rb") as handle:
        handle.seek(end)
        block = handle.read(tarfile.BLOCKSIZE)
    if len(block) == tarfile.BLOCKSIZE and block.strip(b"\0"):  # tarfile stops quietly at a bad header
        raise _damaged(path, end)
    if end >= size or len(block) < tarfile.BLOCKSIZE:
        log.warning("tar shard %s ends without its end-of-archive blocks (truncated?)", path)
    return entries


def _damaged(path: str, offset: int) -> UsageError:
    return UsageError(f"datadir: tar shard {path} has a damaged header at byte {offset} (the members after it cannot "
                      "be found): repair the shard or leave it out", "datadir")


def sample_key(name: str) -> Optional[Tuple[str, str]]:
    """(key, suffix) of a member name: the path up to the first dot of its basename, and the rest; None when the
    basename has no dot or starts with one."""
    folder, _, base = name.rpartition("/")
    stem, dot, suffix = base.partition(".")
    if not dot or not stem:
        return None
    return (folder + "/" + stem if folder else stem), suffix


def samples(entries: Sequence[Entry]) -> Iterator[Tuple[str, Dict[str, Entry]]]:
    """(key, {lower-case suffix: entry}) of each run of consecutive members sharing a key (a suffix met twice
    in a sample: its first member)."""
    key, sample = None, {}
    for entry in entries:
        found = sample_key(entry[0])
        if found is None:
            continue
        if found[0] != key:
            if sample:
                yield key, sample
            key, sample = found[0], {}
        sample.setdefault(found[1].lower(), entry)
    if sample:
        yield key, sample


def sample_image(sample: Dict[str, Entry]) -> Optional[Entry]:
    return next((sample[s] for s in IMAGE_SUFFIXES if s in sample), None)


def read_label(handle, shard: str, entry: Optional[Entry]) -> int:
    """The integer a ``cls`` member holds (-1 without one, or where a truncated shard cuts it off: a warning);
    not an integer: UsageError naming datadir."""
    if entry is None:
        return -1
    name, offset, size = entry
    handle.seek(offset)
    data = handle.read(min(size, MAX_LABEL_BYTES + 1))
    if len(data) < min(size, MAX_LABEL_BYTES + 1):
        log.warning("tar shard %s is truncated in the label %s: label -1", shard, name)
        return -1
    try:
        if size > MAX_LABEL_BYTES:
            raise ValueError
        return int(data.decode("ascii").strip())
    except (ValueError, UnicodeDecodeError):
        raise UsageError(f"datadir: tar shard {shard} member {name}: the label {data[:20]!r} is not an integer (a "
                         ".cls member holds the class as text)", "datadir") from None


def read_shards(datadir: str) -> ImageList:
    """The image list of the shards ``datadir`` names (see the module docstring): one image per sample that has
    one, in shard order then tar order, with its ``TarMember`` and label."""
    root, names = shard_files(datadir)
    paths, labels, members = [], [], []
    without_image = 0
    for shard in names:
        path = os.path.join(root, shard)
        with open(path, "rb") as handle:
            for _, sample in samples(index_shard(path)):
                image = sample_image(sample)
                if image is None:
                    without_image += 1
                    continue
                paths.append(f"{shard}/{image[0]}")
                labels.append(read_label(handle, path, sample.get(LABEL_SUFFIX)))
                members.append(TarMember(shard, image[1], image[2]))
    if not paths:
        raise UsageError(f"datadir {datadir}: its {len(names)} tar shard(s) hold no image (a sample's member "
                         f"ending in {', '.join('.' + s for s in IMAGE_SUFFIXES)})", "datadir")
    log.info("%d tar shards: %d images, %d samples without an image left out", len(names), len(paths), without_image)
    return ImageList(paths, labels, root, {"kind": "tar", "datadir": datadir, "shards": len(names)}, members)


# ------------------------------------------------------------------------------ finding recorded images again


def recorded_list(datadir: str, filelist: Optional[str], recorded: ImageList) -> ImageList:
    """The list a tracker file records for tar shards, its paths under the shards ``datadir`` names now (the
    dataset may have moved). The shards carry their list: a filelist is refused."""
    if filelist is not None:
        raise UsageError("the tracker file was made from tar shards, which carry their own image list: give no "
                         "filelist", "filelist")
    root, _ = shard_files(datadir)
    return ImageList(list(recorded.paths), list(recorded.labels), root, recorded.description)


def split_shard_path(path: str, shards: set) -> Optional[Tuple[str, str]]:
    """(shard, member) of a list path ``<shard>/<member>``, the shard one of ``shards``; None when none is."""
    for at, char in enumerate(path):
        if char == "/" and path[:at] in shards:
            return path[:at], path[at + 1:]
    return None


def with_members(images: ImageList, needed: Sequence[int], datadir: str) -> ImageList:
    """``images`` with the ``TarMember`` of each needed image, found in the shards ``datadir`` names (only the
    shards they are in are indexed). An image in none of them, or whose member its shard lacks: UsageError
    naming datadir."""
    root, names = shard_files(datadir)
    known = set(names)
    wanted: Dict[str, List[Tuple[int, str]]] = defaultdict(list)
    for index in needed:
        found = split_shard_path(images.paths[index], known)
        if found is None:
            raise UsageError(f"image {index} {images.paths[index]!r} is in no tar shard of datadir {datadir}: give the "
                             "shards find_max_acts read", "datadir")
        wanted[found[0]].append((index, found[1]))
    members: List[Optional[TarMember]] = [None] * len(images)
    for shard, requests in wanted.items():
        entries: Dict[str, Tuple[int, int]] = {}
        for name, offset, size in index_shard(os.path.join(root, shard)):
            entries.setdefault(name, (offset, size))
        for index, name in requests:
            if name not in entries:
                raise UsageError(f"image {index} {images.paths[index]!r}: the shard {shard} of datadir {datadir} has "
                                 f"no member {name!r}: give the shards find_max_acts read", "datadir")
            members[index] = TarMember(shard, *entries[name])
    return ImageList(list(images.paths), list(images.labels), root, images.description, members)
