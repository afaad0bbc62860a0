"""Reading and writing images: the only module that uses PIL.

Images in memory are numpy arrays (H, W, 3) in RGB order: uint8 0..255 when read, float 0..1 when written. Floats
become 8 bits as the original's OpenCV wrote them (``to_uint8``); JPEGs at OpenCV's default quality, 95.
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
    """[0, 1] floats to uint8 as the original wrote them: ``cv2.imwrite(f, 255 * im)`` converts the float64 image
    with ``saturate_cast<uchar>``, i.e. ``cvRound`` (round half to even, the x86 SSE2 conversion) then clamping to
    [0, 255]; NaN, infinities and values that do not fit an int32 become the conversion's INT_MIN, clamped to 0."""
    scaled = np.asarray(img01, np.float64) * 255.0
    with np.errstate(invalid="ignore"):
        rounded = np.rint(scaled)
        fits = np.isfinite(rounded) & (rounded >= -2.0**31) & (rounded <= 2.0**31 - 1)
    return np.where(fits, np.clip(np.where(fits, rounded, 0.0), 0, 255), 0).astype(np.uint8)


def encode_image(img01: np.ndarray, fmt: str) -> bytes:
    """Encode (H, W, 3) or (H, W, 4) floats in [0, 1] (RGB or RGBA; ``to_uint8`` makes them 8 bits), or uint8
    already, as JPEG or PNG bytes."""
    buf = io.BytesIO()
    img01 = np.asarray(img01)
    pil = Image.fromarray(img01 if img01.dtype == np.uint8 else to_uint8(img01))
    if fmt.upper() in ("JPEG", "JPG"):
        pil.save(buf, format="JPEG", quality=JPEG_QUALITY)
    else:
        pil.save(buf, format=fmt.upper())
    return buf.getvalue()


def save_image(path: str, img01: np.ndarray) -> None:
    """Write (H, W, 3|4) floats in [0, 1] (or uint8) atomically; the format follows the extension (.jpg, .png)."""
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    fmt = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG"}.get(ext)
    if fmt is None:
        raise ValueError(f"image files must end in .jpg, .jpeg or .png, got {path!r}")
    write_bytes_atomic(path, encode_image(img01, fmt))


def norm01(arr: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1], the original's ``norm01``: ``(arr - min) / (max - min + 1e-10)`` in float64 (a
    constant array becomes 0)."""
    arr = np.array(arr, np.float64)
    arr -= arr.min()
    arr /= arr.max() + 1e-10
    return arr


def norm01c(arr: np.ndarray, center: float) -> np.ndarray:
    """Scale so ``center`` maps to 0.5 and the larger side reaches 0 or 1, the original's ``norm01c``:
    ``(arr - center) / (max(2 max, -2 min) + 1e-10) + 0.5`` in float64 (a constant array equal to ``center``
    becomes 0.5)."""
    arr = np.array(arr, np.float64)
    arr -= center
    arr /= max(2 * arr.max(), -2 * arr.min()) + 1e-10
    arr += 0.5
    return arr


# ---------------------------------------------------------------------------------------------------- RGBA


def _check_rgba(rgba: np.ndarray) -> np.ndarray:
    rgba = np.asarray(rgba)
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"an RGBA image is (H, W, 4), got shape {rgba.shape}")
    return rgba


def checkerboard(h: int, w: int, square: int = 8, light: float = 1.0, dark: float = 0.8) -> np.ndarray:
    """(h, w, 3) float32 grey checkerboard in [0, 1] with ``square``-pixel squares, ``light`` at the top left
    (the usual "transparent" backdrop of image editors)."""
    rows = (np.arange(h) // int(square))[:, None]
    cols = (np.arange(w) // int(square))[None, :]
    board = np.where((rows + cols) % 2 == 0, light, dark).astype(np.float32)
    return np.repeat(board[:, :, None], 3, axis=2)


def composite_over(rgba: np.ndarray, background) -> np.ndarray:
    """(H, W, 4) RGBA in [0, 1] over ``background`` ((H, W, 3), or a colour broadcast to it): ``rgb * a +
    background * (1 - a)``, (H, W, 3) float32."""
    rgba = _check_rgba(rgba).astype(np.float32)
    rgb, a = rgba[..., :3], rgba[..., 3:4]
    return (rgb * a + np.asarray(background, np.float32) * (1 - a)).astype(np.float32)


def over_checkerboard(rgba: np.ndarray, square: int = 8) -> np.ndarray:
    """``composite_over`` a light-grey ``checkerboard``: (H, W, 3) float32."""
    rgba = _check_rgba(rgba)
    return composite_over(rgba, checkerboard(rgba.shape[0], rgba.shape[1], square))


def over_white(rgba: np.ndarray) -> np.ndarray:
    """``composite_over`` white: (H, W, 3) float32."""
    return composite_over(rgba, (1.0, 1.0, 1.0))


def save_rgba_png(path: str, rgba: np.ndarray) -> None:
    """Write (H, W, 4) floats in [0, 1] as an RGBA PNG with a real alpha channel, atomically."""
    if not str(path).lower().endswith(".png"):
        raise ValueError(f"RGBA images are written as .png, got {path!r}")
    save_image(path, _check_rgba(rgba))


def load_image_rgba(path: str) -> np.ndarray:
    """Read any image PIL reads as (H, W, 4) uint8 RGBA (opaque where the file has no alpha)."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGBA"))


def tile_images(rows, pad: int = 2, value: float = 1.0) -> np.ndarray:
    """A grid picture from ``rows``, a list of lists of (h, w, 3) float images in [0, 1] (sizes may differ): each
    cell is placed top-left in a cell of the largest size, ``pad`` pixels of ``value`` between and around cells.
    Returns (H, W, 3) float32."""
    rows = [list(r) for r in rows]
    cells = [np.asarray(c, np.float32) for r in rows for c in r]
    if not cells or any(c.ndim != 3 or c.shape[2] != 3 for c in cells):
        raise ValueError("tile_images needs a non-empty list of lists of (h, w, 3) images")
    ch, cw = max(c.shape[0] for c in cells), max(c.shape[1] for c in cells)
    ncols = max(len(r) for r in rows)
    out = np.full((pad + len(rows) * (ch + pad), pad + ncols * (cw + pad), 3), value, np.float32)
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            top, left = pad + i * (ch + pad), pad + j * (cw + pad)
            cell = np.asarray(cell, np.float32)
            out[top:top + cell.shape[0], left:left + cell.shape[1]] = cell
    return out
