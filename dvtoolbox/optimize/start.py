"""The starting image x0, as the original's ``_get_x0``: the same numpy draws for the same seed.

Contract: ``(start_at, rand_seed, mean) => x0``, x0 (3, H, W) float64 in mean-subtracted pixel space on the
0..255 scale (the optimizer's space), in the model's channel order. The draw uses the legacy Mersenne-Twister
stream of ``np.random.seed(rand_seed)`` through a private ``np.random.RandomState(rand_seed)``: bit-identical to
the original's float64 draw, global numpy state untouched:

- ``mean_plus_rand``: ``normal(0, 10, mean.shape)`` -- the mean image plus a little noise;
- ``randu``: ``uniform(0, 255, mean.shape) - mean`` -- uniform noise in pixel space;
- ``mean``: zeros -- the mean image itself;
- a path to a ``.npy`` file: x0 as stored there, shape ``mean.shape``, used as given (float64 files keep every
  bit; other real dtypes are widened to float64 exactly).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from dvtoolbox.errors import UsageError

START_AT_CHOICES = ("mean_plus_rand", "randu", "mean")


def _rng(rand_seed: Any) -> np.random.RandomState:
    """The legacy stream ``np.random.seed(rand_seed)`` would give; a bad seed raises UsageError."""
    try:
        return np.random.RandomState(rand_seed)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"rand_seed must be an integer in [0, 2**32 - 1], got {rand_seed!r} ({exc})") from None


def _draw(start_at: str, rand_seed: Any, mean: np.ndarray) -> np.ndarray:
    """The original's float64 draw for one of START_AT_CHOICES: (3, H, W) float64."""
    rng = _rng(rand_seed)
    if start_at == "mean_plus_rand":
        return rng.normal(0, 10, mean.shape)
    if start_at == "randu":
        return rng.uniform(0, 255, mean.shape) - mean.astype(np.float64)
    return np.zeros(mean.shape)


def load_x0(path: str, shape: tuple) -> np.ndarray:
    """x0 from a ``.npy`` file, checked to be finite real numbers of ``shape``: float64 (the file's own values,
    widened exactly when stored narrower). Problems raise UsageError."""
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # any unreadable file is the user's input
        reason = " ".join(str(exc).split())  # one line
        raise UsageError(f"start_at: cannot read x0 file {path!r}: {reason}") from None
    if not isinstance(arr, np.ndarray):
        raise UsageError(f"start_at: {path!r} must hold a single array (.npy), got {type(arr).__name__}")
    if arr.dtype.kind not in "iuf" or not np.isfinite(arr).all():
        raise UsageError(f"start_at: x0 in {path!r} must be finite real numbers, got dtype {arr.dtype}"
                         f"{' with non-finite values' if arr.dtype.kind in 'iuf' else ''}")
    if arr.shape != tuple(shape):
        raise UsageError(f"start_at: x0 in {path!r} must have shape {tuple(shape)} (the mean's), got {arr.shape}")
    return arr.astype(np.float64)


def initial_x(start_at: str, rand_seed: Any, mean: np.ndarray) -> np.ndarray:
    """The starting image x0 for ``start_at`` (see the module docstring): (3, H, W) float64.

    mean: (3, H, W) float data mean on the 0..255 scale (only its shape matters except for 'randu').
    An unknown ``start_at`` that is not an existing ``.npy`` file raises UsageError naming what is valid.
    """
    mean = np.asarray(mean)
    if start_at in START_AT_CHOICES:
        return _draw(start_at, rand_seed, mean)
    if isinstance(start_at, (str, os.PathLike)) and str(start_at).endswith(".npy"):
        if not os.path.isfile(start_at):
            raise UsageError(f"start_at: x0 file {str(start_at)!r} does not exist")
        return load_x0(start_at, mean.shape)
    raise UsageError(
        f"start_at must be one of {', '.join(START_AT_CHOICES)} or a path to a .npy file holding x0 of shape "
        f"{mean.shape}, got {start_at!r}"
    )
