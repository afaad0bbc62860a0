"""The data mean, as the original's --mean gives it: None, one value per channel, or a mean-image file.

The result is always an image: (3, H, W) float64 on the 0..255 scale, in the model's channel order, of the data
size. A per-channel tuple is broadcast to the data size (the original documented this but crashed on it). A mean
image larger than the data size is centre-cropped as the original does (ImageNet's 256x256 mean for a 227x227
net); a smaller one is resized bilinearly. Files: ``.npy`` (3, H, W) and Caffe ``.binaryproto`` BlobProto.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from dvtoolbox.errors import UsageError

MeanSpec = Union[None, Sequence[float], str]


def load_mean(spec: MeanSpec, data_size: Tuple[int, int], n_channels: int = 3) -> np.ndarray:
    """(3, H, W) float64 mean image for ``spec`` (see the module docstring); bad input raises UsageError."""
    h, w = data_size
    if spec is None:
        return np.zeros((n_channels, h, w), np.float64)
    if isinstance(spec, (tuple, list)):
        if len(spec) != n_channels or not all(isinstance(v, (int, float)) for v in spec):
            raise UsageError(f"--mean: a per-channel mean needs {n_channels} numbers, got {spec!r}")
        return np.broadcast_to(np.asarray(spec, np.float64)[:, None, None], (n_channels, h, w)).copy()
    if isinstance(spec, str):
        return fit_to_size(read_mean_file(spec), data_size)
    raise UsageError(f"--mean must be None, a tuple of {n_channels} numbers or a quoted file path, got {spec!r}")


def read_mean_file(path: str) -> np.ndarray:
    """A mean image from ``.npy`` or ``.binaryproto``: (C, H, W) float64."""
    if not os.path.isfile(path):
        raise UsageError(f"--mean: cannot read mean file {path!r}: no such file")
    try:
        if path.endswith(".binaryproto"):
            arr = _read_binaryproto(path)
        else:
            arr = np.load(path, allow_pickle=False)
    except UsageError:
        raise
    except Exception as exc:  # any unreadable file is the user's input
        raise UsageError(f"--mean: cannot read mean file {path!r}: {exc}") from None
    arr = np.asarray(arr, np.float64)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3 or arr.shape[0] not in (1, 3):
        raise UsageError(f"--mean: the mean image in {path!r} must have shape (3, H, W), got {arr.shape}")
    return arr


def fit_to_size(mean: np.ndarray, data_size: Tuple[int, int]) -> np.ndarray:
    """Centre-crop (as the original) or, when smaller, bilinearly resize a (C, H, W) mean to ``data_size``."""
    h, w = data_size
    if mean.shape[1] >= h and mean.shape[2] >= w:
        top, left = (mean.shape[1] - h) // 2, (mean.shape[2] - w) // 2
        return np.ascontiguousarray(mean[:, top:top + h, left:left + w], np.float64)
    from scipy.ndimage import zoom

    factors = (1, h / mean.shape[1], w / mean.shape[2])
    return np.ascontiguousarray(zoom(mean, factors, order=1, mode="nearest", grid_mode=True), np.float64)[:, :h, :w]


def _read_binaryproto(path: str) -> np.ndarray:
    try:
        from dvtoolbox.models.caffe.proto import read_blobproto_array
    except ImportError:
        raise UsageError(f"--mean: reading {path!r} needs the Caffe support (dvtoolbox.models.caffe)") from None
    return read_blobproto_array(path)


def mean_is_per_channel(mean: np.ndarray) -> Optional[Tuple[float, ...]]:
    """The per-channel values when the (C, H, W) mean is constant per channel, else None."""
    flat = mean.reshape(mean.shape[0], -1)
    if np.all(flat == flat[:, :1]):
        return tuple(float(v) for v in flat[:, 0])
    return None
