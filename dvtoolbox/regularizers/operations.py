"""DVT's post-step regularizers: what the original optimizer does to the image after each gradient step.

Contract: ``(x, grad, ii, params) => x``, deterministic, applied in phase 6 of the loop after ``x += lr * grad``
(and ``dvtoolbox.models.pixel_space.crop_to_valid_range`` in phase 0, before the forward pass). These are *not* lucid-style transforms: those
are random augmentations applied before the forward pass and never change the optimized image itself; these
change the image: L2 decay, Gaussian blur every ``blur_every`` steps and four percentile clips that zero
small values or pixels (Yosinski et al. 2015, section 3; ``optimize/gradient_optimizer.py`` of the original).

Shapes and ranges: ``x`` is (N, 3, H, W) float64 (the original's numpy state; float32 in the explicit fast mode)
on any device, in mean-subtracted pixel space on the 0..255 scale, in the model's channel order; ``grad`` is the
network's float32 gradient of the same shape, widened where it meets ``x`` as numpy widened it. Each batch element
n is an independent image: every percentile is taken over that element only. All work is torch ops on ``x``'s
device; nothing modifies its input.

Exactness: on float64 the blur gives the bits of ``scipy.ndimage.gaussian_filter(x[n, c], sigma)`` (mode
'reflect', truncate 4.0; same kernel, same order of operations, no fused multiply-add); percentiles follow
``np.percentile``'s default 'linear' method, interpolated in float64 as the original's float64 arrays were, and
each clip compares with a STRICT ``<`` against that float64 threshold. NaN inputs are not supported.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Tuple

import numpy as np
import torch

TRUNCATE = 4.0  # scipy.ndimage.gaussian_filter's default: the kernel reaches int(4 * sigma + 0.5) pixels


# ---------------------------------------------------------------------------------------------------- blur


def gaussian_radius(sigma: float, truncate: float = TRUNCATE) -> int:
    """The kernel half-width scipy uses: ``int(truncate * sigma + 0.5)`` (so 2 for sigma 0.5, 28 for 7)."""
    return int(truncate * float(sigma) + 0.5)


def gaussian_kernel1d(sigma: float, truncate: float = TRUNCATE) -> np.ndarray:
    """Normalised 1-D Gaussian, scipy's ``_gaussian_kernel1d(sigma, 0, radius)`` computed by the same numpy
    operations (so the same float64 bits).

    Returns (2 * radius + 1,) float64, summing to 1, exactly symmetric; radius = ``gaussian_radius``.
    """
    radius = gaussian_radius(sigma, truncate)
    offsets = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (float(sigma) * float(sigma)) * offsets ** 2)
    return phi / phi.sum()


@functools.lru_cache(maxsize=64)
def _kernel_weights(sigma: float, truncate: float) -> Tuple[float, ...]:
    """``gaussian_kernel1d`` as Python floats (cached: the loop blurs with one sigma)."""
    return tuple(float(w) for w in gaussian_kernel1d(sigma, truncate))


def reflect_indices(size: int, radius: int) -> torch.Tensor:
    """Source index of each of ``size + 2 * radius`` padded positions under half-sample symmetric padding.

    scipy's mode 'reflect' (``d c b a | a b c d | d c b a``), repeated as often as needed, so ``radius`` may
    exceed ``size``. Returns (size + 2 * radius,) int64 on the CPU, values in [0, size).
    """
    pos = torch.arange(-radius, size + radius, dtype=torch.int64).remainder(2 * size)
    return torch.where(pos < size, pos, 2 * size - 1 - pos)


_REFLECT_INDICES = {}  # (size, radius, device) -> the indices there: made once, so a CUDA graph can replay them


def _reflect_indices_on(size: int, radius: int, device: torch.device) -> torch.Tensor:
    """``reflect_indices`` on ``device``, cached per (size, radius, device). Only plain tensors are cached: the
    fake tensors of a trace (``make_fx``, ``torch.compile``) are not kept for later eager calls."""
    key = (size, radius, torch.device(device))
    indices = _REFLECT_INDICES.get(key)
    if indices is None:
        indices = reflect_indices(size, radius).to(device)
        if type(indices) is torch.Tensor and len(_REFLECT_INDICES) < 64:
            _REFLECT_INDICES[key] = indices
    return indices


def _correlate_along(x: torch.Tensor, weights: Tuple[float, ...], dim: int) -> torch.Tensor:
    """1-D correlation of ``x`` with the symmetric ``weights`` along ``dim`` (2 or 3), reflect-padded to keep the
    size, in scipy's order of operations for a symmetric kernel (``NI_Correlate1D``): the centre times its weight,
    then, from the outermost pair inwards, ``(left + right) * weight`` added. Each step is one IEEE operation (no
    fused multiply-add), so float64 input gives scipy's bits.

    x: (N, C, H, W) float. Shifted adds: faster than a 1-channel conv2d on the CPU for these sizes.
    """
    radius = (len(weights) - 1) // 2
    size = x.shape[dim]
    padded = x.index_select(dim, _reflect_indices_on(size, radius, x.device))
    out = padded.narrow(dim, radius, size) * weights[radius]
    for k in range(radius, 0, -1):
        pair = padded.narrow(dim, radius - k, size) + padded.narrow(dim, radius + k, size)
        out.add_(pair.mul_(weights[radius + k]))
    return out


def gaussian_blur(x: torch.Tensor, sigma: float, truncate: float = TRUNCATE) -> torch.Tensor:
    """Blur each image and channel as ``scipy.ndimage.gaussian_filter(x[n, c], sigma)`` does.

    x: (N, C, H, W) float64 (scipy's bits) or float32 (scipy's result to float32 rounding), any values. sigma in
    pixels; sigma <= 1e-15 returns a copy (as scipy skips the axis). Separable: rows (H) first, then columns (W),
    mode 'reflect', radius ``int(truncate * sigma + 0.5)``. Returns a new (N, C, H, W) tensor on x's device.
    """
    sigma = float(sigma)
    if sigma <= 1e-15:
        return x.clone()
    weights = _kernel_weights(sigma, float(truncate))
    return _correlate_along(_correlate_along(x, weights, 2), weights, 3)


# ---------------------------------------------------------------------------------------------------- percentiles


def _linear_position(count: int, q: float) -> Tuple[int, int, float]:
    """np.percentile's 'linear' position in a sorted array of ``count`` values: (lo, hi, fraction).

    Computed in float64 exactly as numpy does (``(count - 1) * (q / 100)``); at or past the end lo = hi = count-1.
    """
    q = float(q)
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {q!r}")
    if count < 1:
        raise ValueError("percentile of an empty set of values")
    virtual = (count - 1) * (q / 100.0)
    if virtual >= count - 1:
        return count - 1, count - 1, 0.0
    lo = math.floor(virtual)
    return lo, lo + 1, virtual - lo


def _adjacent_order_stats(values: torch.Tensor, lo: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The ``lo``-th and ``lo + 1``-th smallest values (0-based, ties counted) of each row: two (N,) tensors.

    One ``topk`` from whichever end of the sorted order is nearer (faster than kthvalue on the CPU, works for any
    K), then the two extreme values of that subset. Needs ``lo + 1 < K``.
    """
    count = values.shape[1]
    if lo + 2 <= count - lo:  # the lo + 2 smallest: their two largest are sorted[lo + 1], sorted[lo]
        low = torch.topk(values, lo + 2, dim=1, largest=False, sorted=False).values
        b, a = torch.topk(low, 2, dim=1, largest=True, sorted=True).values.unbind(1)
    else:  # the count - lo largest: their two smallest are sorted[lo], sorted[lo + 1]
        high = torch.topk(values, count - lo, dim=1, largest=True, sorted=False).values
        a, b = torch.topk(high, 2, dim=1, largest=False, sorted=True).values.unbind(1)
    return a, b


def _percentile_float64(values: torch.Tensor, q: float) -> torch.Tensor:
    """``np.percentile(values[n].astype(float64), q)`` for each row n: (N,) float64 on values' device."""
    lo, hi, frac = _linear_position(values.shape[1], q)
    if hi == lo:  # at the top: the maximum
        return values.amax(dim=1).double()
    a, b = _adjacent_order_stats(values, lo)
    a, b = a.double(), b.double()
    diff = b - a
    if frac >= 0.5:  # numpy's _lerp picks this form for t >= 0.5
        return b - diff * (1.0 - frac)
    return a + diff * frac


def percentile_per_item(values: torch.Tensor, q: float) -> torch.Tensor:
    """The q-th percentile of each row, as ``np.percentile(row, q)`` (method 'linear').

    values: (N, K) float, any K >= 1 (topk based, no torch.quantile size limit). q in [0, 100].
    Returns (N,) in values' dtype: numpy's float64 result for the same values, rounded once.
    """
    return _percentile_float64(values, q).to(values.dtype)


def below_percentile(values: torch.Tensor, q: float) -> torch.Tensor:
    """Mask of entries STRICTLY below their row's q-th percentile (the float64 threshold): (N, K) bool."""
    return values < _percentile_float64(values, q).unsqueeze(1)


# ---------------------------------------------------------------------------------------------------- clips


def _zero_where(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The original's ``x - x * mask`` (mask broadcast to x): zeros the masked entries, returns a new tensor."""
    return x - x * mask.to(x.dtype)


def _pixel_mask(stat: torch.Tensor, pct: float) -> torch.Tensor:
    """Per-pixel statistic (N, H, W) -> (N, 1, H, W) mask of pixels strictly below the element's percentile."""
    n = stat.shape[0]
    return below_percentile(stat.reshape(n, -1), pct).reshape(stat.shape).unsqueeze(1)


def _channel_sum(t: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, H, W): the channels added first to last, numpy's order for ``t.sum(1)``."""
    out = t[:, 0].clone()
    for c in range(1, t.shape[1]):
        out.add_(t[:, c])
    return out


def _pixel_benefit(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Predicted benefit of each pixel, sum over channels of ``grad * -x`` (in x's dtype): (N, H, W)."""
    return _channel_sum(grad.to(x.dtype) * -x)


def zero_small_values(x: torch.Tensor, pct: float) -> torch.Tensor:
    """Zero entries whose |x| is strictly below the pct-th percentile of |x| over the element's 3*H*W values.

    x: (N, 3, H, W). Returns a new tensor of the same shape.
    """
    mags = x.abs().reshape(x.shape[0], -1)
    return _zero_where(x, below_percentile(mags, pct).reshape(x.shape))


def zero_small_norm_pixels(x: torch.Tensor, pct: float) -> torch.Tensor:
    """Zero pixels (all channels) whose L2 norm over channels is strictly below the element's pct-th percentile.

    x: (N, 3, H, W). Returns a new tensor of the same shape.
    """
    norms = _channel_sum(x * x).sqrt()
    return _zero_where(x, _pixel_mask(norms, pct))


def zero_small_benefit_pixels(x: torch.Tensor, grad: torch.Tensor, pct: float) -> torch.Tensor:
    """Zero pixels whose benefit (sum over channels of grad * -x) is strictly below the element's percentile.

    x, grad: (N, 3, H, W). Returns a new tensor of x's shape.
    """
    return _zero_where(x, _pixel_mask(_pixel_benefit(x, grad), pct))


def zero_small_abs_benefit_pixels(x: torch.Tensor, grad: torch.Tensor, pct: float) -> torch.Tensor:
    """Zero pixels whose |benefit| (see ``zero_small_benefit_pixels``) is strictly below the element's percentile.

    x, grad: (N, 3, H, W). Returns a new tensor of x's shape.
    """
    return _zero_where(x, _pixel_mask(_pixel_benefit(x, grad).abs(), pct))


# ---------------------------------------------------------------------------------------------------- phase 6


def _number(value: Any) -> float:
    """A param as float, None read as 0 (the original's defaults are None for 'off')."""
    return 0.0 if value is None else float(value)


def blur_due(ii: int, blur_radius: Any, blur_every: Any) -> bool:
    """Whether step ``ii`` blurs: blur_every != 0, blur_radius > 0 and ii % blur_every == 0 (ii = 0 blurs)."""
    every = int(_number(blur_every))
    return every != 0 and _number(blur_radius) > 0 and ii % every == 0


def regularize(x: torch.Tensor, grad: torch.Tensor, ii: int, p: Any) -> torch.Tensor:
    """The original's phase 6 after the gradient step, in its order; returns a new tensor.

    x: (N, 3, H, W) float64 (or float32) after ``x += lr * grad``; grad: the same step's float32 gradient, same
    shape; ii: step index.
    p: params with ``decay, blur_radius, blur_every, small_val_percentile, small_norm_percentile,
    px_benefit_percentile, px_abs_benefit_percentile`` (None read as 0). Order: decay ``x *= 1 - decay``;
    blur when ``blur_due``; then each clip whose percentile > 0: small values, small-norm pixels, small-benefit
    pixels, small-|benefit| pixels, each seeing the x left by the previous ones.
    """
    x = x * (1.0 - _number(p.decay))
    if blur_due(ii, p.blur_radius, p.blur_every):
        x = gaussian_blur(x, _number(p.blur_radius))
    if _number(p.small_val_percentile) > 0:
        x = zero_small_values(x, _number(p.small_val_percentile))
    if _number(p.small_norm_percentile) > 0:
        x = zero_small_norm_pixels(x, _number(p.small_norm_percentile))
    if _number(p.px_benefit_percentile) > 0:
        x = zero_small_benefit_pixels(x, grad, _number(p.px_benefit_percentile))
    if _number(p.px_abs_benefit_percentile) > 0:
        x = zero_small_abs_benefit_pixels(x, grad, _number(p.px_abs_benefit_percentile))
    return x
