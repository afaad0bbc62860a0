"""Reading and writing images: the only module that uses PIL.

Images in memory are numpy arrays (H, W, 3) in RGB order: uint8 0..255 when read, float 0..1 when written.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

from dvtoolbox.io.atomic import write_bytes_atomic

JPEG_QUALITY = 95


def load_image_rgb(path: str) -> np.ndarray:
    """Read any image PIL reads (grey ones too) as (H, W, 3) uint8 RGB."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def resize_center_crop(img: np.ndarray, size: int, resize_to: int) -> np.ndarray:
    """Resize (H, W, 3) uint8 so its shorter side is ``resize_to`` (bilinear), then crop the central
    ``size`` x ``size``; returns (size, size, 3) uint8."""
    h, w = img.shape[:2]
    scale = resize_to / min(h, w)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    resized = np.asarray(Image.fromarray(img).resize((new_w, new_h), Image.BILINEAR))
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return resized[top:top + size, left:left + size]


def to_uint8(img01: np.ndarray) -> np.ndarray:
    """[0, 1] floats to uint8 as matplotlib's imsave did for the original: floor(255 * v), clipped."""
    return np.clip(np.floor(np.asarray(img01, np.float64) * 255.0), 0, 255).astype(np.uint8)


def encode_image(img01: np.ndarray, fmt: str) -> bytes:
    """Encode (H, W, 3) or (H, W, 4) floats in [0, 1] (RGB or RGBA) as JPEG or PNG bytes."""
    buf = io.BytesIO()
    pil = Image.fromarray(to_uint8(img01))
    if fmt.upper() in ("JPEG", "JPG"):
        pil.save(buf, format="JPEG", quality=JPEG_QUALITY)
    else:
        pil.save(buf, format=fmt.upper())
    return buf.getvalue()


def save_image(path: str, img01: np.ndarray) -> None:
    """Write (H, W, 3|4) floats in [0, 1] atomically; the format follows the extension (.jpg, .png)."""
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    fmt = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG"}.get(ext)
    if fmt is None:
        raise ValueError(f"image files must end in .jpg, .jpeg or .png, got {path!r}")
    write_bytes_atomic(path, encode_image(img01, fmt))


def norm01(arr: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1] (the original's norm01); a constant array becomes 0.5."""
    arr = np.asarray(arr, np.float64)
    lo, span = arr.min(), arr.max() - arr.min()
    return np.full_like(arr, 0.5) if span == 0 else (arr - lo) / span


def norm01c(arr: np.ndarray, center: float) -> np.ndarray:
    """Scale so ``center`` maps to 0.5 and the larger side reaches 0 or 1 (the original's norm01c);
    a constant array equal to ``center`` becomes 0.5."""
    arr = np.asarray(arr, np.float64) - center
    scale = max(2 * arr.max(), -2 * arr.min())
    return np.full_like(arr, 0.5) if scale == 0 else arr / scale + 0.5
