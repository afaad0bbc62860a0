"""Colour: from unconstrained values to valid RGB in [0, 1], optionally through a decorrelated colour space.

Contract: ``to_valid_rgb(raw_f, decorrelate) => image_f`` with ``image_f()`` (N, 3, H, W) RGB in (0, 1).
``raw_f()`` gives (N, 3, H, W) unconstrained values; with ``decorrelate`` they are read as coordinates in a
decorrelated colour space and mapped to RGB by ``COLOR_CORRELATION_NORMALIZED`` (lucid's square root of the
ImageNet colour correlation matrix, ``color_correlation_svd_sqrt``, divided by its largest column norm): each
pixel's colour becomes ``M @ t``. Then a sigmoid.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

# lucid's color_correlation_svd_sqrt: U * sqrt(S) of the SVD of ImageNet's RGB correlation matrix (rounded).
COLOR_CORRELATION_SVD_SQRT = np.asarray([[0.26, 0.09, 0.02],
                                         [0.27, 0.00, -0.05],
                                         [0.27, -0.09, 0.03]], dtype=np.float32)
MAX_NORM_SVD_SQRT = float(np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0)))
COLOR_CORRELATION_NORMALIZED = (COLOR_CORRELATION_SVD_SQRT / MAX_NORM_SVD_SQRT).astype(np.float32)
COLOR_MEAN = (0.48, 0.46, 0.41)  # lucid's ImageNet mean colour, RGB in [0, 1] (for reference; the sigmoid centres 0.5)


def linear_decorrelate_color(t: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) decorrelated colours -> (N, 3, H, W) RGB before the sigmoid: ``out[:, c] = sum_k M[c, k]
    t[:, k]`` with M = ``COLOR_CORRELATION_NORMALIZED``."""
    if t.dim() != 4 or t.shape[1] != 3:
        raise ValueError(f"linear_decorrelate_color needs (N, 3, H, W), got shape {tuple(t.shape)}")
    matrix = torch.as_tensor(COLOR_CORRELATION_NORMALIZED, dtype=t.dtype, device=t.device)
    return torch.einsum("ck,nkhw->nchw", matrix, t)


def to_valid_rgb(raw_f: Callable[[], torch.Tensor], decorrelate: bool = False) -> Callable[[], torch.Tensor]:
    """``image_f()`` = ``sigmoid(linear_decorrelate_color(raw_f()))`` (without the colour matrix when
    ``decorrelate`` is False): (N, 3, H, W) RGB in (0, 1)."""

    def image_f() -> torch.Tensor:
        raw = raw_f()
        return torch.sigmoid(linear_decorrelate_color(raw) if decorrelate else raw)

    return image_f
