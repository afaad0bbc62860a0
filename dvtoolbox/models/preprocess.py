"""Photographs to model input, as a model's ``InputContract`` asks for it.

(H, W, 3) uint8 RGB -> resize the shorter side (bilinear), centre crop to the contract size -> model channel order
-> minus the mean on the 0..255 scale -> (1, 3, H, W) float32 tensor.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from dvtoolbox.io.images import resize_center_crop
from dvtoolbox.models.contract import InputContract


def image_to_model_input(img_uint8_rgb_hwc: np.ndarray, contract: InputContract,
                         resize_to: Optional[int] = None) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, h, w) float32, model channel order, 0..255 minus ``contract.mean``.

    The shorter side is resized (bilinear) to ``resize_to`` (default: the contract size, so the whole centre square
    is kept; efficientnet_lite0 classifies its test photographs best so), then the centre ``contract.size`` square
    is cropped. Only square contract sizes are supported."""
    h, w = contract.size
    if h != w:
        raise ValueError(f"image_to_model_input needs a square input size, got {contract.size}")
    resize_to = resize_to if resize_to is not None else h
    crop = resize_center_crop(img_uint8_rgb_hwc, h, resize_to)
    chw = crop.astype(np.float32).transpose(2, 0, 1)[list(contract.channel_swap_to_rgb)]
    chw -= np.asarray(contract.mean, np.float32)[:, None, None]
    return torch.from_numpy(np.ascontiguousarray(chw))[None]
