"""The dataset find_max_acts streams: the image list, its decoding and preprocessing, and its batches.

``ImageList``: paths relative to ``root`` and one label each (-1 when the list gives none). An image's index in
it is the index every tracker result refers to; an image that cannot be read keeps its index.

- ``read_filelist(datadir, filelist)``: the original's ``datadir`` + ``filelist``, one ``relative/path label`` per
  line (a path alone is allowed: label -1); blank lines are skipped.
- ``scan_folder(root)``: every image file under ``root`` (recursive, sorted by relative path, by extension).
- tar shards (webdataset's layout): ``exemplars.shards.read_shards``; each image then also has a ``TarMember``
  (its shard, offset and size), read by seek + read (``read_rgb``), so any image of the list can be read alone.
- ``Preprocess`` / ``preprocess_for(model)``: a photograph to the model's input (its input contract; the
  original's 256x256 resize and centre crop for Caffe nets).
- ``image_batches``: a DataLoader (workers decode off the main thread) over some of the list's images, in list
  order; an image that cannot be read comes back as zeros with its error, so the caller skips it and counts it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dvtoolbox.errors import UsageError
from dvtoolbox.io.images import load_image_rgb
from dvtoolbox.models.pixel_space import InputContract, image_to_model_input

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class TarMember(NamedTuple):
    """Where an image of a tar shard lies: shard (its path relative to the list's root), offset (of the member's
    data in the shard, bytes) and size (bytes)."""

    shard: str
    offset: int
    size: int


@dataclass
class ImageList:
    """paths: relative to root (or absolute); labels: one int per path, -1 when none; root: the folder;
    members: for tar shards, one ``TarMember`` per path (None where not located yet), else None."""

    paths: List[str]
    labels: List[int]
    root: str = ""
    description: dict = field(default_factory=dict)
    members: Optional[List[Optional[TarMember]]] = None

    def __post_init__(self):
        if len(self.paths) != len(self.labels):
            raise ValueError(f"{len(self.paths)} paths but {len(self.labels)} labels")
        if self.members is not None and len(self.members) != len(self.paths):
            raise ValueError(f"{len(self.paths)} paths but {len(self.members)} tar members")

    def __len__(self) -> int:
        return len(self.paths)

    def full_path(self, index: int) -> str:
        return os.path.join(self.root, self.paths[index])


def read_filelist(datadir: str, filelist: str) -> ImageList:
    """The original's filelist: ``path [label]`` per line, paths relative to ``datadir``. A line with more than two
    fields or a label that is not an integer is a one-line UsageError naming the file and the line."""
    try:
        with open(filelist, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the filelist {filelist}: {getattr(exc, 'strerror', None) or exc}",
                         "filelist") from None
    paths, labels = [], []
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) > 2:
            raise UsageError(f"{filelist} line {number}: expected 'path [label]', got {len(fields)} fields",
                             "filelist")
        try:
            label = int(fields[1]) if len(fields) == 2 else -1
        except ValueError:
            raise UsageError(f"{filelist} line {number}: the label {fields[1][:40]!r} is not an integer",
                             "filelist") from None
        paths.append(fields[0])
        labels.append(label)
    if not paths:
        raise UsageError(f"the filelist {filelist} names no image", "filelist")
    return ImageList(paths, labels, datadir, {"kind": "filelist", "datadir": datadir, "filelist": filelist})


def scan_folder(root: str) -> ImageList:
    """Every file under ``root`` whose extension is an image's (case-insensitive), sorted by relative path."""
    if not os.path.isdir(root):
        raise UsageError(f"datadir {root} is not a folder", "datadir")
    found = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in files:
            if name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(os.path.relpath(os.path.join(folder, name), root))
    found.sort()
    if not found:
        raise UsageError(f"datadir {root} holds no image ({', '.join(IMAGE_EXTENSIONS)})", "datadir")
    return ImageList(found, [-1] * len(found), root, {"kind": "folder", "datadir": root})


def read_member(root: str, member: TarMember) -> bytes:
    """The bytes of a tar member (one seek and one read; OSError or a short read: UsageError, one line)."""
    path = os.path.join(root, member.shard)
    try:
        with open(path, "rb") as handle:
            handle.seek(member.offset)
            data = handle.read(member.size)
    except OSError as exc:
        raise UsageError(f"tar shard {path!r} cannot be read: {exc.strerror or exc}") from None
    if len(data) != member.size:
        raise UsageError(f"tar shard {path!r} is truncated: {len(data)} of the member's {member.size} bytes")
    return data


def read_rgb(images: ImageList, index: int) -> np.ndarray:
    """Image ``index`` of the list as (H, W, 3) uint8 RGB (``load_image_rgb``: what the file shows), from its file
    or its tar member. Unreadable: UsageError (one line)."""
    member = images.members[index] if images.members is not None else None
    if member is None:
        return load_image_rgb(images.full_path(index))
    return load_image_rgb(images.full_path(index), data=read_member(images.root, member))


# ---------------------------------------------------------------------------------------------------- decoding


def default_workers() -> int:
    """DataLoader workers when --workers is not given: one core left to the main process, at most 8."""
    return min(8, max(0, (os.cpu_count() or 1) - 1))


def is_caffe_model(model: nn.Module) -> bool:
    """A network built from a Caffe prototxt (``models.caffe``): it keeps the original's preprocessing."""
    return hasattr(model, "caffe_layer_outputs")


@dataclass(frozen=True)
class Preprocess:
    """A photograph (H, W, 3) uint8 RGB -> the model input (3, h, w) float32 (``models.pixel_space``: 0..255 in the
    model's channel order minus its mean).

    caffe=False: the model's own rule, ``image_to_model_input`` (shorter side resized to the input size, centre
    crop). caffe=True: the original find_max_acts.py's rule, ``caffe.Classifier(image_dims=(256, 256))`` with
    ``predict(oversample=False)``: the whole image resized to 256x256 (the aspect ratio is not kept; to the input
    size if that is larger), then the centre crop of the input size. The original resized floats with skimage's
    bilinear interpolation; this resizes the uint8 image with Pillow's bilinear filter (values may differ by a
    grey level)."""

    contract: InputContract
    caffe: bool = False
    caffe_image_dims: Tuple[int, int] = (256, 256)

    def __call__(self, rgb: np.ndarray) -> torch.Tensor:
        if not self.caffe:
            return image_to_model_input(rgb, self.contract)[0]
        h, w = self.contract.size
        dims = (max(h, self.caffe_image_dims[0]), max(w, self.caffe_image_dims[1]))
        resized = np.asarray(Image.fromarray(rgb).resize((dims[1], dims[0]), Image.BILINEAR))
        top, left = (dims[0] - h) // 2, (dims[1] - w) // 2
        crop = resized[top:top + h, left:left + w].astype(np.float32).transpose(2, 0, 1)
        chw = crop[list(self.contract.channel_swap_to_rgb)] - np.asarray(self.contract.mean, np.float32)[:, None, None]
        return torch.from_numpy(np.ascontiguousarray(chw))


def preprocess_for(model: nn.Module) -> Preprocess:
    """The preprocessing of ``model``'s input contract (see ``Preprocess``); a non-square input size of a
    non-Caffe model is a one-line UsageError."""
    contract = model.input_contract
    caffe = is_caffe_model(model)
    if not caffe and contract.size[0] != contract.size[1]:
        raise UsageError(f"find_max_acts needs a square input size for this model, got {tuple(contract.size)}",
                         "model")
    return Preprocess(contract, caffe)


class ImageDataset(Dataset):
    """The images of ``images`` at ``indices`` (their indices in the list), decoded with ``read_rgb`` (what
    the file or tar member shows) and preprocessed. Item: (input (3, h, w) float32, index in the list, error: "" or the one-line
    reason the image could not be read, when the input is zeros)."""

    def __init__(self, images: ImageList, indices: Sequence[int], preprocess: Preprocess):
        self.images, self.indices, self.preprocess = images, list(indices), preprocess

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int):
        index = self.indices[item]
        try:
            x, error = self.preprocess(read_rgb(self.images, index)), ""
        except (UsageError, OSError, ValueError) as exc:
            h, w = self.preprocess.contract.size
            x, error = torch.zeros((3, h, w)), " ".join(str(exc).split()) or type(exc).__name__
        return x, index, error


WORKER_NICENESS = 10


def lower_priority(_worker_id: int = 0) -> None:
    """A decoding worker's start: its scheduling priority lowered (``os.nice``, where the system has it), so that it
    runs on what the network leaves idle of the cores instead of taking them from the network's threads."""
    if hasattr(os, "nice"):
        try:
            os.nice(WORKER_NICENESS)
        except OSError:  # a system that refuses: the worker runs at the normal priority
            pass


def image_batches(images: ImageList, indices: Sequence[int], preprocess: Preprocess, batch_size: int,
                  workers: int, pin_memory: bool = False) -> DataLoader:
    """Batches (inputs (B, 3, h, w), indices (B,) int64, errors: list of B strings) in list order, decoded by
    ``workers`` processes at a lower priority (``lower_priority``; 0: in this one); pin_memory: page-locked
    batches, for a copy to a GPU that overlaps the computation."""
    return DataLoader(ImageDataset(images, indices, preprocess), batch_size=batch_size, shuffle=False,
                      num_workers=workers, persistent_workers=False, pin_memory=pin_memory,
                      worker_init_fn=lower_priority if workers else None)
