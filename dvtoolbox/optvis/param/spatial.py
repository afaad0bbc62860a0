"""Spatial image parameterisations: how an image is made from the tensors the optimizer changes.

Contract: ``(shape, sd, ..., generator, device) => (params, raw_f)``. ``shape`` is (N, C, H, W); ``params`` is a
list of leaf float32 tensors with ``requires_grad`` on ``device``, drawn from ``generator`` (see ``rng.py``);
``raw_f()`` returns an (N, C, H, W) float32 tensor of UNCONSTRAINED values, differentiable in ``params``. Map it to
an RGB image in [0, 1] with ``color.to_valid_rgb`` (``images.get_image`` does both).

- ``pixel_image``: the values themselves (sd 0.01 by default).
- ``fft_image``: real and imaginary parts of the 2-D real FFT of each channel, scaled by 1 / f**decay_power (f the
  spatial frequency in cycles per pixel, at least 1 / max(H, W)), inverse-transformed with the orthonormal
  ``irfft2`` and divided by 4 (lucid's constant). Odd widths keep W // 2 + 1 frequencies and ``irfft2(s=(H, W))``
  (lucid kept one more and cropped a pixel, because TensorFlow's irfft2d had no output size).
- ``lowres_tensor``: a lower-resolution tensor resized bilinearly (half-pixel centres, edges clamped) to the shape,
  optionally shifted by symmetric padding (lucid's ``offset``).
- ``laplacian_pyramid``: a sum of ``lowres_tensor`` at full, 1/2, 1/4, ... resolution.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from dvtoolbox.optvis.param.rng import DeviceLike, randn, resolve

DEFAULT_SD = 0.01
FFT_DIVISOR = 4.0  # lucid's constant: the raw values then sit mostly inside the sigmoid's linear range

ParamResult = Tuple[List[torch.Tensor], Callable[[], torch.Tensor]]


def _check_shape(shape: Sequence[int], what: str = "shape") -> Tuple[int, int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"{what} must be (N, C, H, W) with every size >= 1, got {shape!r}")
    return shape


def _sd(sd: Optional[float]) -> float:
    return DEFAULT_SD if sd is None else float(sd)


def pixel_image(shape: Sequence[int], sd: Optional[float] = None, generator: Optional[torch.Generator] = None,
                device: DeviceLike = None) -> ParamResult:
    """One parameter per value: ``raw_f()`` is the (N, C, H, W) parameter itself, initialised N(0, sd**2)."""
    shape = _check_shape(shape)
    generator, device = resolve(generator, device)
    tensor = randn(shape, _sd(sd), generator, device).requires_grad_(True)
    return [tensor], lambda: tensor


def rfft2d_freqs(h: int, w: int) -> np.ndarray:
    """Spatial frequency magnitude (cycles per pixel) of each coefficient of ``np.fft.rfft2`` on an (h, w) image:
    (h, w // 2 + 1) float64, ``sqrt(fy**2 + fx**2)`` with fy = ``fftfreq(h)``, fx = ``rfftfreq(w)``."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    return np.sqrt(fx * fx + fy * fy)


def spectrum_scale(h: int, w: int, decay_power: float = 1.0) -> np.ndarray:
    """``1 / max(f, 1 / max(h, w)) ** decay_power`` for each rfft2 coefficient: (h, w // 2 + 1) float64."""
    return 1.0 / np.maximum(rfft2d_freqs(h, w), 1.0 / max(h, w)) ** float(decay_power)


def fft_image(shape: Sequence[int], sd: Optional[float] = None, decay_power: float = 1.0,
              generator: Optional[torch.Generator] = None, device: DeviceLike = None) -> ParamResult:
    """Fourier parameterisation (see the module docstring).

    params: one (N, C, H, W // 2 + 1, 2) tensor, the real and imaginary parts, N(0, sd**2).
    raw_f(): ``irfft2(scale * spectrum, s=(H, W), norm="ortho") / 4``, (N, C, H, W) float32.
    """
    n, c, h, w = _check_shape(shape)
    generator, device = resolve(generator, device)
    scale_np = spectrum_scale(h, w, decay_power)
    spectrum = randn((n, c) + scale_np.shape + (2,), _sd(sd), generator, device).requires_grad_(True)
    scale = torch.tensor(scale_np, dtype=torch.float32, device=device)

    def raw_f() -> torch.Tensor:
        scaled = torch.view_as_complex(spectrum) * scale
        return torch.fft.irfft2(scaled, s=(h, w), norm="ortho") / FFT_DIVISOR

    return [spectrum], raw_f


def resize_bilinear(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """(N, C, h, w) -> (N, C, H, W), bilinear with half-pixel centres and clamped edges (``align_corners=False``,
    no antialiasing): the same as ``scipy.ndimage.zoom(order=1, mode="nearest", grid_mode=True)``."""
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _symmetric_shift_index(size: int, offset: int, device: torch.device) -> torch.Tensor:
    """Rows of ``pad(x, (offset, 0), "symmetric")[:size]``: [offset-1, ..., 0, 0, 1, ..., size-offset-1]."""
    if not 0 <= offset <= size:
        raise ValueError(f"offset must be in [0, {size}], got {offset}")
    return torch.cat([torch.arange(offset - 1, -1, -1, device=device), torch.arange(0, size - offset, device=device)])


def _resolve_offset(offset, shape, underlying_shape) -> Tuple[int, int]:
    """lucid's offset rules for the two spatial axes: None/False -> 0, True -> half the upsampling ratio, a number
    -> that many pixels on both axes, a pair -> (rows, columns)."""
    entries = list(offset) if isinstance(offset, (list, tuple)) else [offset, offset]
    if len(entries) != 2:
        raise ValueError(f"offset must be None, a bool, a number or a pair (rows, columns), got {offset!r}")
    out = []
    for axis, entry in enumerate(entries):
        if entry is None or entry is False:
            out.append(0)
        elif entry is True:
            out.append(int(shape[2 + axis] / underlying_shape[2 + axis] / 2))
        else:
            out.append(int(entry))
    return out[0], out[1]


def lowres_tensor(shape: Sequence[int], underlying_shape: Sequence[int], offset=None, sd: Optional[float] = None,
                  generator: Optional[torch.Generator] = None, device: DeviceLike = None) -> ParamResult:
    """A tensor of ``shape`` (N, C, H, W) made from a parameter of ``underlying_shape`` (N, C, h, w) resized
    bilinearly (``resize_bilinear``) and shifted by ``offset`` pixels (symmetric padding on the top/left, then
    cropped back; see ``_resolve_offset``). params: the (N, C, h, w) tensor, N(0, sd**2)."""
    shape = _check_shape(shape)
    underlying_shape = _check_shape(underlying_shape, "underlying_shape")
    if underlying_shape[:2] != shape[:2]:
        raise ValueError(f"underlying_shape must keep N and C of shape {shape}, got {underlying_shape}")
    generator, device = resolve(generator, device)
    oy, ox = _resolve_offset(offset, shape, underlying_shape)
    rows = _symmetric_shift_index(shape[2], oy, device) if oy else None
    cols = _symmetric_shift_index(shape[3], ox, device) if ox else None
    low = randn(underlying_shape, _sd(sd), generator, device).requires_grad_(True)

    def raw_f() -> torch.Tensor:
        t = resize_bilinear(low, shape[2:])
        if rows is not None:
            t = t.index_select(2, rows)
        if cols is not None:
            t = t.index_select(3, cols)
        return t

    return [low], raw_f


def laplacian_pyramid(shape: Sequence[int], n_levels: int = 4, sd: Optional[float] = None,
                      generator: Optional[torch.Generator] = None, device: DeviceLike = None) -> ParamResult:
    """The sum of ``n_levels`` ``lowres_tensor`` of ``shape`` (N, C, H, W) made from (N, C, H // 2**k, W // 2**k),
    k = 0 .. n_levels - 1 (at least 1 x 1). params: the n_levels tensors, finest first."""
    n, c, h, w = _check_shape(shape)
    if int(n_levels) < 1:
        raise ValueError(f"n_levels must be >= 1, got {n_levels!r}")
    generator, device = resolve(generator, device)
    params, level_fs = [], []
    for k in range(int(n_levels)):
        low_shape = (n, c, max(1, h // 2 ** k), max(1, w // 2 ** k))
        level_params, level_f = lowres_tensor(shape, low_shape, sd=sd, generator=generator, device=device)
        params += level_params
        level_fs.append(level_f)

    def raw_f() -> torch.Tensor:
        total = level_fs[0]()
        for level_f in level_fs[1:]:
            total = total + level_f()
        return total

    return params, raw_f
