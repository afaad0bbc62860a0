"""Natural-image amplitude spectra: computed from photographs (offline), shipped as package data, read back at any
image size, and summarised by a power law.

The space is the one ``get_image`` and ``param.maco.maco_image`` make images in: the DECORRELATED LOGIT image
``z = C^-1 logit(clip(p, LOGIT_EPS, 1 - LOGIT_EPS))`` of an RGB image p in [0, 1] (``(3, H, W)``, C =
``COLOR_CORRELATION_NORMALIZED``), so that ``sigmoid(C z)`` gives the image back. A spectrum is
``|rfft2(z, norm="ortho")|`` per channel, ``(3, H, W // 2 + 1)``; with the orthonormal transform a coefficient's
magnitude at a frequency f (cycles per pixel) does not depend on the image size for a scale-invariant image.

Shipped: ``dvtoolbox/data/natural_spectrum.npz`` (made by ``scripts/natural_spectrum.py`` from eight photographs
with free licences that PyPI wheels ship, 224-pixel crops at several scales; see ``dvtoolbox/data/README.md``):

- ``quadrant``: (3, R/2 + 1, R/2 + 1) float32, the mean amplitude at frequency (|fy|, |fx|) = (i / R, j / R),
  R = ``reference_size`` (224); averaged over 224-pixel crops of the photographs AND their mirror images, which
  makes the mean symmetric under fy -> -fy and fx -> -fx, so one quadrant holds it all. Entry (0, 0) (the mean
  colour) is replaced by twice the mean of its two neighbours (a 1/f extrapolation used only to interpolate
  frequencies below 1 / R on images larger than R);
- ``mean``: (3,) float32, the mean of z over the crops (its sign gives the DC coefficient's sign);
  ``logit_low`` / ``logit_high`` (3,): the logits of the lowest and highest crop mean RGB per colour channel
  (MACO's free mean logit stays between them); ``rgb_mean``, ``rgb_low``, ``rgb_high`` (3,): the crops'
  mean RGB in [0, 1], their average, lowest and highest per channel;
- ``reference_size`` and ``sources`` (the photographs' names).

``natural_amplitude(h, w)`` samples the quadrant bilinearly at each rfft2 coefficient's (|fy|, |fx|) (exact grid
points when h and w divide R) and sets the DC coefficient to ``|mean| * sqrt(h w)``.
numpy only, except ``natural_amplitude_tensor``.
"""

from __future__ import annotations

import functools
import importlib.resources
from typing import Iterable, Optional, Tuple

import numpy as np

from dvtoolbox.optvis.param.color import COLOR_CORRELATION_NORMALIZED

LOGIT_EPS = 1.0 / 255.0
REFERENCE_SIZE = 224
SPECTRUM_FILE = "natural_spectrum.npz"
SPECTRUM_ARRAYS = ("quadrant", "mean", "logit_low", "logit_high", "rgb_mean", "rgb_low", "rgb_high")


# ---------------------------------------------------------------------------------------------------- computing


def decorrelated_logit(image01: np.ndarray) -> np.ndarray:
    """(3, H, W) RGB in [0, 1] -> (3, H, W) float64 ``C^-1 logit(clip(p, eps, 1 - eps))``."""
    p = np.clip(np.asarray(image01, dtype=np.float64), LOGIT_EPS, 1.0 - LOGIT_EPS)
    if p.ndim != 3 or p.shape[0] != 3:
        raise ValueError(f"decorrelated_logit needs a (3, H, W) RGB image, got shape {p.shape}")
    logit = np.log(p / (1.0 - p))
    inverse = np.linalg.inv(COLOR_CORRELATION_NORMALIZED.astype(np.float64))
    return np.einsum("ck,khw->chw", inverse, logit)


def amplitude_spectrum(z: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (C, H, W // 2 + 1) float64 ``|rfft2(z, norm="ortho")|``."""
    return np.abs(np.fft.rfft2(np.asarray(z, dtype=np.float64), norm="ortho"))


def fold_quadrant(amplitude: np.ndarray) -> np.ndarray:
    """(C, S, S // 2 + 1) spectrum of an S x S image (S even) -> (C, S/2 + 1, S/2 + 1): row i is the mean of rows
    i and S - i (frequencies +fy and -fy)."""
    c, s, half = amplitude.shape
    if s % 2 or half != s // 2 + 1:
        raise ValueError(f"fold_quadrant needs the rfft2 spectrum of a square image of even size, got {amplitude.shape}")
    rows = np.arange(s // 2 + 1)
    return 0.5 * (amplitude[:, rows] + amplitude[:, (-rows) % s])


def average_spectrum(images01: Iterable[np.ndarray]) -> Tuple[np.ndarray, np.ndarray, int]:
    """Mean amplitude quadrant and mean z over ``images01`` ((3, S, S) RGB in [0, 1], S even) and their mirror
    images (each image counted twice, mirrored left-right). Returns (quadrant (3, S/2+1, S/2+1) float64 with the
    (0, 0) entry extrapolated as the module docstring says, mean (3,), number of images)."""
    total, total_mean, count = None, np.zeros(3), 0
    for image in images01:
        for view in (image, image[:, :, ::-1]):
            z = decorrelated_logit(view)
            spectrum = fold_quadrant(amplitude_spectrum(z))
            total = spectrum if total is None else total + spectrum
            total_mean += z.mean(axis=(1, 2))
            count += 1
    if not count:
        raise ValueError("average_spectrum needs at least one image")
    quadrant = total / count
    quadrant[:, 0, 0] = quadrant[:, 0, 1] + quadrant[:, 1, 0]
    return quadrant, total_mean / count, count // 2


# ---------------------------------------------------------------------------------------------------- power law


def radial_profile(amplitude: np.ndarray, h: int, w: int, n_bins: int = 24,
                   f_min: Optional[float] = None, f_max: float = 0.5) -> Tuple[np.ndarray, np.ndarray]:
    """Radially averaged amplitude of an rfft2 spectrum (..., h, w // 2 + 1) of an h x w image (channels and any
    leading axes averaged): ``n_bins`` log-spaced bins of f = sqrt(fy^2 + fx^2) from ``f_min`` (default 2 /
    max(h, w)) to ``f_max`` cycles per pixel. Returns (mean frequency, mean amplitude) of the non-empty bins."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fy * fy + fx * fx)
    a = np.asarray(amplitude, dtype=np.float64).reshape(-1, h, w // 2 + 1).mean(axis=0)
    f_min = 2.0 / max(h, w) if f_min is None else float(f_min)
    edges = np.geomspace(f_min, f_max, n_bins + 1)
    which = np.digitize(f, edges) - 1
    freqs, amps = [], []
    for b in range(n_bins):
        mask = which == b
        if mask.any():
            freqs.append(f[mask].mean())
            amps.append(a[mask].mean())
    return np.asarray(freqs), np.asarray(amps)


def power_law_fit(freqs: np.ndarray, amps: np.ndarray) -> Tuple[float, float, float]:
    """Least squares of log(amp) = intercept + slope * log(f): (slope, intercept, r2)."""
    x, y = np.log(np.asarray(freqs, dtype=np.float64)), np.log(np.asarray(amps, dtype=np.float64))
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    r2 = 1.0 - residual.var() / y.var() if y.var() > 0 else 1.0
    return float(slope), float(intercept), float(r2)


def spectral_slope(images01: np.ndarray) -> np.ndarray:
    """The naturalness statistic of ``benchmarks/naturalness.py``: for each (N, H, W, 3) RGB image in [0, 1], the
    slope of the power law fitted to the radially averaged amplitude spectrum of its grey level (RGB mean, image
    mean removed, orthonormal rfft2; bins as ``radial_profile``). Photographs: about -1 (amplitude ~ 1 / f)."""
    images = np.asarray(images01, dtype=np.float64)
    n, h, w, _ = images.shape
    out = np.empty(n)
    for i, image in enumerate(images):
        grey = image.mean(axis=2)
        amplitude = np.abs(np.fft.rfft2(grey - grey.mean(), norm="ortho"))
        out[i] = power_law_fit(*radial_profile(amplitude, h, w))[0]
    return out


# ---------------------------------------------------------------------------------------------------- shipped


@functools.lru_cache(maxsize=1)
def load_natural_spectrum() -> dict:
    """The shipped spectrum: the arrays of ``SPECTRUM_ARRAYS`` (float64), "reference_size" and "sources" (see the
    module docstring)."""
    with importlib.resources.as_file(importlib.resources.files("dvtoolbox") / "data" / SPECTRUM_FILE) as path:
        with np.load(path) as data:
            out = {key: data[key].astype(np.float64) for key in SPECTRUM_ARRAYS}
            out.update(reference_size=int(data["reference_size"]), sources=[str(s) for s in data["sources"]])
            return out


def sample_quadrant(quadrant: np.ndarray, reference_size: int, h: int, w: int) -> np.ndarray:
    """(C, R/2+1, R/2+1) quadrant -> (C, h, w // 2 + 1): bilinear at (|fy| R, |fx| R), every coefficient of an
    h x w image's rfft2 (frequencies up to 0.5 cycles per pixel land inside the quadrant)."""
    c, n, _ = quadrant.shape
    ky = np.abs(np.concatenate([np.arange(0, (h - 1) // 2 + 1), np.arange(-(h // 2), 0)]))  # |fftfreq(h)| * h
    u = (ky * reference_size / h)[:, None] * np.ones((1, w // 2 + 1))
    v = (np.arange(w // 2 + 1) * reference_size / w)[None, :] * np.ones((h, 1))
    u0, v0 = np.clip(np.floor(u).astype(int), 0, n - 1), np.clip(np.floor(v).astype(int), 0, n - 1)
    u1, v1 = np.minimum(u0 + 1, n - 1), np.minimum(v0 + 1, n - 1)
    du, dv = u - u0, v - v0
    q = quadrant
    return ((1 - du) * (1 - dv) * q[:, u0, v0] + du * (1 - dv) * q[:, u1, v0]
            + (1 - du) * dv * q[:, u0, v1] + du * dv * q[:, u1, v1])


def natural_amplitude(h: int, w: int, spectrum: Optional[dict] = None) -> Tuple[np.ndarray, np.ndarray]:
    """(amplitude (3, h, w // 2 + 1) float64, dc_sign (3,) of +-1) for an h x w image from ``spectrum`` (default the
    shipped one): the quadrant sampled at every coefficient, and the DC coefficient ``|mean| * sqrt(h w)``."""
    spectrum = load_natural_spectrum() if spectrum is None else spectrum
    amplitude = sample_quadrant(spectrum["quadrant"], spectrum["reference_size"], int(h), int(w))
    mean = np.asarray(spectrum["mean"], dtype=np.float64)
    amplitude[:, 0, 0] = np.abs(mean) * np.sqrt(h * w)
    return amplitude, np.where(mean < 0, -1.0, 1.0)
