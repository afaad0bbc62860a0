"""The model's pixel space: what every dvtoolbox model takes, and every way in and out of it.

Every model takes ``x`` of shape (N, 3, H, W), float32: the image on the 0..255 scale, channels in the model's own
order, minus the model's mean. This is the pixel space of the original Caffe toolbox, so ``--lr-params``,
``--decay``, blur radii in pixels and the [0, 255] clip keep their meaning on every model; a model that wants
another scale (a torchvision model expects ImageNet-normalised RGB in 0..1) rescales inside its own forward.

- ``InputContract``: what a model declares (input size, channel order, per-channel mean, its label layers and class
  names); the optimizer never special-cases a model.
- The mean as the original's ``--mean`` gives it: None, one value per channel, or a mean-image file (``.npy`` or
  Caffe ``.binaryproto``), always returned as an image (3, H, W) float64 (the optimizer's image state is float64, as
  the original's numpy arrays were) on the 0..255 scale in the model's channel order, of the data size: a larger
  mean image is centre-cropped as the original does (ImageNet's 256x256 mean for a 227x227 net), a smaller one
  resized bilinearly; a per-channel tuple is broadcast (the original documented this but crashed on it).
- ``image_to_model_input``: a photograph (H, W, 3) uint8 RGB -> (1, 3, h, w) float32 model input (resize the
  shorter side, centre crop).
- ``to_model_input`` / ``from_model_input``: the feature-visualisation library's (N, 3, H, W) RGB in [0, 1] <->
  pixel space, differentiable.
- ``crop_to_valid_range``: the original's phase 0, ``clip(x + mean, 0, 255) - mean``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

from dvtoolbox.checks import is_real
from dvtoolbox.errors import UsageError
from dvtoolbox.io.images import resize_center_crop, resize_exactly


# ---------------------------------------------------------------------------------------------------- contract


CHANNEL_ORDERS = ("RGB", "BGR")
PHOTO_RESAMPLES = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")


@dataclass(frozen=True)
class InputContract:
    """What a model expects.

    size: (H, W) of the input.
    channel_order: "RGB" or "BGR", the order of the 3 input channels.
    mean: per-channel mean on the 0..255 scale in the model's channel order (3 floats).
    label_layers: layers whose channels are the classes of ``labels`` (e.g. ("fc8", "prob")).
    labels: class names, index = channel, or None.
    resample: the filter photographs are resized with (``PHOTO_RESAMPLES``; a Hugging Face image processor's).
    resize_to: the shorter side photographs are resized to before the centre crop; None: the crop side.
    stretch: resize photographs to ``size`` without keeping their aspect ratio and without a crop (a Hugging Face
    image processor with ``size: {height, width}`` and no centre crop).
    """

    size: Tuple[int, int]
    channel_order: str
    mean: Tuple[float, float, float]
    label_layers: Tuple[str, ...] = ()
    labels: Optional[Tuple[str, ...]] = field(default=None, repr=False)
    resample: str = "bilinear"
    resize_to: Optional[int] = None
    stretch: bool = False

    def __post_init__(self):
        if self.resample not in PHOTO_RESAMPLES:
            raise ValueError(f"resample must be one of {PHOTO_RESAMPLES}, got {self.resample!r}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {self.channel_order!r}")
        if len(self.size) != 2 or min(self.size) < 1:
            raise ValueError(f"size must be (H, W) with H, W >= 1, got {self.size!r}")
        if len(self.mean) != 3:
            raise ValueError(f"mean must have 3 values (one per channel), got {self.mean!r}")

    @property
    def channel_swap_to_rgb(self) -> Tuple[int, int, int]:
        """Permutation that turns the model's channel order into RGB (the original's --channel-swap-to-rgb)."""
        return (0, 1, 2) if self.channel_order == "RGB" else (2, 1, 0)

    def mean_image(self, size: Optional[Sequence[int]] = None) -> np.ndarray:
        """The per-channel mean broadcast to an image: (3, H, W) float64 (the optimizer's image state is float64,
        as the original's numpy arrays were), 0..255, model channel order."""
        h, w = size if size is not None else self.size
        return np.broadcast_to(np.asarray(self.mean, np.float64)[:, None, None], (3, h, w)).copy()


# ---------------------------------------------------------------------------------------------------- mean


MeanSpec = Union[None, Sequence[float], str]


def load_mean(spec: MeanSpec, data_size: Tuple[int, int], n_channels: int = 3) -> np.ndarray:
    """(3, H, W) float64 mean image for ``spec`` (see the module docstring); bad input raises UsageError."""
    h, w = data_size
    if spec is None:
        return np.zeros((n_channels, h, w), np.float64)
    if isinstance(spec, (tuple, list)):
        if len(spec) != n_channels or not all(is_real(v) and math.isfinite(v) for v in spec):
            raise UsageError(f"mean: a per-channel mean needs {n_channels} finite numbers, got {spec!r}", "mean")
        return np.broadcast_to(np.asarray(spec, np.float64)[:, None, None], (n_channels, h, w)).copy()
    if isinstance(spec, str):
        return fit_to_size(read_mean_file(spec), data_size)
    raise UsageError(f"mean must be None, a tuple of {n_channels} numbers or a file path, got {spec!r}", "mean")


def read_mean_file(path: str) -> np.ndarray:
    """A mean image from ``.npy`` or ``.binaryproto``: (C, H, W) float64."""
    if not os.path.isfile(path):
        raise UsageError(f"mean: cannot read mean file {path!r}: no such file", "mean")
    try:
        if path.endswith(".binaryproto"):
            arr = _read_binaryproto(path)
        else:
            arr = np.load(path, allow_pickle=False)
    except UsageError:
        raise
    except Exception as exc:  # any unreadable file is the user's input
        raise UsageError(f"mean: cannot read mean file {path!r}: {exc}", "mean") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "iuf":
        raise UsageError(f"mean: the mean image in {path!r} must hold numbers, got "
                         f"{getattr(arr, 'dtype', type(arr).__name__)}", "mean")
    arr = np.asarray(arr, np.float64)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3 or arr.shape[0] not in (1, 3):
        raise UsageError(f"mean: the mean image in {path!r} must have shape (3, H, W), got {arr.shape}", "mean")
    if not np.isfinite(arr).all():
        raise UsageError(f"mean: the mean image in {path!r} holds NaN or infinite values", "mean")
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
        raise UsageError(f"mean: reading {path!r} needs the Caffe support (dvtoolbox.models.caffe)", "mean") from None
    return read_blobproto_array(path)


def mean_is_per_channel(mean: np.ndarray) -> Optional[Tuple[float, ...]]:
    """The per-channel values when the (C, H, W) mean is constant per channel, else None."""
    flat = mean.reshape(mean.shape[0], -1)
    if np.all(flat == flat[:, :1]):
        return tuple(float(v) for v in flat[:, 0])
    return None


# ---------------------------------------------------------------------------------------------------- photographs


def image_to_model_input(img_uint8_rgb_hwc: np.ndarray, contract: InputContract,
                         resize_to: Optional[int] = None) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, h, w) float32, model channel order, 0..255 minus ``contract.mean``.

    The shorter side is resized (``contract.resample``, bilinear by default) to ``resize_to`` (default: the
    contract's ``resize_to``, else its size, so the whole centre square is kept; efficientnet_lite0 classifies its
    test photographs best so), then the centre ``contract.size`` square is cropped; a contract that ``stretch``es
    resizes the whole photograph to its size instead. Only square contract sizes are supported."""
    h, w = contract.size
    if h != w:
        raise ValueError(f"image_to_model_input needs a square input size, got {contract.size}")
    if contract.stretch and resize_to is None:
        crop = resize_exactly(img_uint8_rgb_hwc, (h, w), contract.resample)
    else:
        resize_to = resize_to if resize_to is not None else (contract.resize_to or h)
        crop = resize_center_crop(img_uint8_rgb_hwc, h, resize_to, contract.resample)
    chw = crop.astype(np.float32).transpose(2, 0, 1)[list(contract.channel_swap_to_rgb)]
    chw -= np.asarray(contract.mean, np.float32)[:, None, None]
    return torch.from_numpy(np.ascontiguousarray(chw))[None]


# ---------------------------------------------------------------------------------------------------- [0, 1] RGB


def _model_order(contract: InputContract):
    """Index that turns RGB channels into the model's order (RGB and BGR swaps are their own inverse)."""
    perm = contract.channel_swap_to_rgb  # model -> RGB
    inverse = [0, 0, 0]
    for model_index, rgb_index in enumerate(perm):
        inverse[rgb_index] = model_index
    return inverse


def _mean(contract: InputContract, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(contract.mean, dtype=like.dtype, device=like.device).view(1, 3, 1, 1)


def to_model_input(image01: torch.Tensor, contract: InputContract) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> (N, 3, H, W) ``image * 255`` in the model's channel order minus its mean."""
    if image01.dim() != 4 or image01.shape[1] != 3:
        raise ValueError(f"to_model_input needs an (N, 3, H, W) RGB image, got shape {tuple(image01.shape)}")
    order = _model_order(contract)
    if order != [0, 1, 2]:
        image01 = image01[:, order]
    return image01 * 255.0 - _mean(contract, image01)


def from_model_input(x: torch.Tensor, contract: InputContract) -> torch.Tensor:
    """The inverse of ``to_model_input``: (N, 3, H, W) pixel space -> (N, 3, H, W) RGB on the [0, 1] scale
    (not clipped)."""
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"from_model_input needs an (N, 3, H, W) tensor, got shape {tuple(x.shape)}")
    rgb = (x + _mean(contract, x)) / 255.0
    perm = list(contract.channel_swap_to_rgb)
    return rgb if perm == [0, 1, 2] else rgb[:, perm]


# ---------------------------------------------------------------------------------------------------- valid range


def crop_to_valid_range(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Clip ``x + mean`` to [0, 255] and subtract ``mean`` again (the original's phase 0).

    x: (N, 3, H, W) float64 (or float32), mean-subtracted 0..255. mean: (3, H, W) (tensor or array; moved to x's
    device and dtype). Returns a new (N, 3, H, W) tensor whose ``+ mean`` lies in [0, 255].
    """
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device)
    return torch.clamp(x + mean, 0.0, 255.0) - mean
