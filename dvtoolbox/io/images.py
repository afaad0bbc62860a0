"""Reading and writing images: the only module that uses PIL.

Images in memory are numpy arrays (H, W, 3) in RGB order: uint8 0..255 when read, float 0..1 when written. Floats
become 8 bits as the original's OpenCV wrote them (``to_uint8``); JPEGs at OpenCV's default quality, 95.

Reading (``load_image_rgb``, ``load_image_rgba``) gives what a file shows, whatever its Pillow mode: the EXIF
orientation applied, 16-bit greyscale scaled to 8 bits, palettes looked up, CMYK and YCbCr converted, transparency
composited over white (``load_image_rgb``) or kept (``load_image_rgba``); ``doc/optvis.md#image-files`` has the
table. A file Pillow refuses or cannot decode (missing, a folder, not an image, over Pillow's decompression-bomb
limit, truncated or damaged, a mode not read) raises ``UsageError``, one line naming the file.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from typing import Optional, Tuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dvtoolbox.errors import UsageError
from dvtoolbox.io.atomic import write_bytes_atomic

JPEG_QUALITY = 95
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
READ_MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "HSV") + \
    SIXTEEN_BIT_MODES + ("I", "F")
"""The Pillow modes ``load_image_rgb`` reads (``doc/optvis.md#image-files`` says how each is shown)."""


def load_image_rgb(path: str, data: Optional[bytes] = None) -> np.ndarray:
    """What the image file shows, as (H, W, 3) uint8 RGB: ``load_image_rgba`` composited over white,
    ``round((c * a + 255 * (255 - a)) / 255)`` per channel (exact: no ties occur). Bad files raise ``UsageError``.
    data: the file's bytes where it is not a file of its own (a tar member); ``path`` then only names it."""
    rgb, alpha = read_image(path, data)
    return rgb if alpha is None else over_white_uint8(rgb, alpha)


def load_image_rgba(path: str) -> np.ndarray:
    """The image file as (H, W, 4) uint8 RGBA, straight (not premultiplied) alpha, opaque where the file has no
    transparency; otherwise as ``load_image_rgb`` (orientation, modes, errors)."""
    rgb, alpha = read_image(path)
    alpha = np.full(rgb.shape[:2], 255, np.uint8) if alpha is None else alpha
    return np.concatenate([rgb, alpha[:, :, None]], axis=2)


def read_image(path: str, data: Optional[bytes] = None) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(rgb (H, W, 3) uint8, alpha (H, W) uint8 or None where the file has no transparency) of the image file's
    first frame, after its EXIF orientation. Raises ``UsageError`` for every file that cannot be read. data: as
    ``load_image_rgb``'s."""
    with open_image(path, data) as img:
        return shown_rgb_alpha(img, path)


def open_image(path: str, data: Optional[bytes] = None) -> Image.Image:
    """The decoded, EXIF-oriented PIL image of ``path``; one-line ``UsageError`` when the path is not a readable
    file, not an image, over ``PIL.Image.MAX_IMAGE_PIXELS`` (Pillow's decompression-bomb guard: its warning, issued
    between 1 and 2 times the limit, refuses the file too; the limit is never lifted here) or cannot be decoded.
    data: the image's bytes, read instead of the file (a tar member; ``path`` names it in messages)."""
    name = f"image {os.fspath(path)!r}"
    if data is None and os.path.isdir(path):
        raise UsageError(f"{name} is a folder, not an image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path if data is None else io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UsageError(bomb_message(name, exc)) from None
    except FileNotFoundError:
        raise UsageError(f"{name}: no such file") from None
    except UnidentifiedImageError:
        raise UsageError(f"{name} is not an image file Pillow can read (PNG, JPEG, TIFF, BMP, GIF, WebP, ...)") \
            from None
    except OSError as exc:
        if exc.errno is None:  # Pillow's own OSErrors: the data, not the file system
            raise UsageError(damaged_message(name, exc)) from None
        raise UsageError(f"{name} cannot be read: {one_line(exc.strerror or exc)}") from None
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 -- whatever a damaged header makes Pillow raise
        raise UsageError(damaged_message(name, exc)) from None
    try:
        img.load()
        oriented = ImageOps.exif_transpose(img)
    except MemoryError:
        img.close()
        raise
    except Exception as exc:  # noqa: BLE001 -- whatever damaged data makes Pillow raise while decoding it
        img.close()
        raise UsageError(damaged_message(name, exc)) from None
    if oriented is not img:
        img.close()
    return oriented


def bomb_message(name: str, exc: Exception) -> str:
    """The decompression-bomb refusal: the file's pixel count (from Pillow's message) and the limit."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = f"{int(found.group(1))} pixels" if found else "too many pixels"
    return (f"{name} has {pixels}, over Pillow's decompression-bomb limit of {Image.MAX_IMAGE_PIXELS} pixels "
            "(PIL.Image.MAX_IMAGE_PIXELS): give a smaller image")


def damaged_message(name: str, exc: Exception) -> str:
    return f"{name} is truncated or damaged: Pillow cannot decode it ({one_line(exc)})"


def one_line(exc) -> str:
    """An exception's text as one line (whitespace runs become one space), or its type where it has none."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def shown_rgb_alpha(img: Image.Image, path: str) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(rgb (H, W, 3) uint8, alpha (H, W) uint8 or None) that a decoded PIL image shows; see
    ``doc/optvis.md#image-files`` for the rule of each mode. A PNG transparency key (``info["transparency"]`` of an
    L, 1, 16-bit grey or RGB image) makes the pixels equal to it transparent."""
    mode, name = img.mode, f"image {os.fspath(path)!r}"
    if mode in ("P", "PA", "La", "RGBa", "LA", "RGBA"):
        rgba = np.asarray(img.convert("RGBA"))  # palette lookup with its transparency; premultiplied undone
        return np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3])
    if mode in ("RGB", "RGBX", "HSV"):
        stored = np.asarray(img)[..., :3] if mode != "HSV" else np.asarray(img.convert("RGB"))
        return np.ascontiguousarray(stored), key_alpha(stored, img.info.get("transparency"), rgb_key=True)
    if mode == "CMYK":
        return cmyk_to_rgb(np.asarray(img)), None
    if mode == "YCbCr":
        return ycbcr_to_rgb(np.asarray(img)), None
    if mode == "1":
        stored = np.asarray(img).astype(np.uint8) * np.uint8(255)
        grey = stored
    elif mode == "L":
        stored = grey = np.asarray(img)
    elif mode in SIXTEEN_BIT_MODES:
        stored = np.asarray(img)
        grey = sixteen_to_eight_bits(stored)
    elif mode == "I":
        stored = np.asarray(img)
        if stored.size and (stored.min() < 0 or stored.max() > 65535):
            raise UsageError(f"{name} is a 32-bit integer image with values {stored.min()}..{stored.max()}: only "
                             "0..65535 (read as 16 bits) is read; convert it to 8 or 16 bits")
        grey = sixteen_to_eight_bits(stored)
    elif mode == "F":
        return float_grey_rgb(np.asarray(img), name), None
    else:
        raise UsageError(f"{name} has Pillow mode {mode!r}, which is not read; valid: {', '.join(READ_MODES)}")
    return np.repeat(grey[:, :, None], 3, axis=2), key_alpha(stored, img.info.get("transparency"))


def key_alpha(stored: np.ndarray, key, rgb_key: bool = False) -> Optional[np.ndarray]:
    """Alpha of a transparency key: 0 where the stored value (a grey level, or an (r, g, b) when ``rgb_key``)
    equals ``key``, 255 elsewhere; None without a key. (A 16-bit colour PNG's key is in 16 bits while Pillow gives
    8-bit samples: it then matches nothing.)"""
    if key is None or isinstance(key, (bytes, bytearray)):
        return None
    if rgb_key:
        if not isinstance(key, tuple) or len(key) != 3:
            return None
        hit = (stored[..., 0] == key[0]) & (stored[..., 1] == key[1]) & (stored[..., 2] == key[2])
    else:
        hit = stored == key
    return np.where(hit, 0, 255).astype(np.uint8)


def sixteen_to_eight_bits(values: np.ndarray) -> np.ndarray:
    """0..65535 to 0..255 by ``round(v * 255 / 65535) = round(v / 257)``, as uint8 (exact in integers: v / 257 is
    never half-way between two integers)."""
    v = values.astype(np.int64)
    return ((2 * v + 257) // 514).astype(np.uint8)


def float_grey_rgb(values: np.ndarray, name: str) -> np.ndarray:
    """A float (mode F) grey image in [0, 1] as (H, W, 3) uint8: ``round(255 v)``, halves to even; values outside
    [0, 1] or not finite raise UsageError (there is no agreed range to guess)."""
    if values.size and not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
        finite = values[np.isfinite(values)]
        span = f"values {finite.min():g}..{finite.max():g}" if finite.size else "no finite values"
        span += "" if finite.size == values.size else " and NaN or infinite ones"
        raise UsageError(f"{name} is a floating-point image with {span}: "
                         "only 0..1 is read; convert it to 8 or 16 bits")
    grey = np.rint(values.astype(np.float64) * 255.0).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def cmyk_to_rgb(cmyk: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 ink amounts to (H, W, 3) uint8: ``round((255 - c) * (255 - k) / 255)`` (and m, y alike),
    exact in integers (no ties occur); an embedded ICC profile is not applied."""
    cmy, k = cmyk[..., :3].astype(np.int64), cmyk[..., 3:].astype(np.int64)
    return ((2 * (255 - cmy) * (255 - k) + 255) // 510).astype(np.uint8)


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 full-range YCbCr (JPEG's JFIF / ITU-R BT.601) to (H, W, 3) uint8 RGB:
    ``R = Y + 1.402 (Cr - 128)``, ``G = Y - 0.344136 (Cb - 128) - 0.714136 (Cr - 128)``, ``B = Y + 1.772 (Cb - 128)``
    in float64, rounded half to even and clipped to 0..255."""
    y, cb, cr = (ycc[..., i].astype(np.float64) for i in range(3))
    cb, cr = cb - 128.0, cr - 128.0
    rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], axis=-1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def over_white_uint8(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 straight colour with (H, W) uint8 alpha, over white: ``round((c a + 255 (255 - a)) / 255)``,
    (H, W, 3) uint8 (exact in integers: the quotient is never half-way)."""
    c, a = rgb.astype(np.int64), alpha.astype(np.int64)[:, :, None]
    return ((2 * (c * a + 255 * (255 - a)) + 255) // 510).astype(np.uint8)


def resize_center_crop(img: np.ndarray, size: int, resize_to: int, resample: str = "bilinear") -> np.ndarray:
    """Resize (H, W, 3) uint8 so its shorter side is ``resize_to`` (bilinear, or the ``resample`` filter PIL
    names: "nearest", "bicubic", "lanczos", "box", "hamming"), then crop the central ``size`` x ``size``; returns
    (size, size, 3) uint8."""
    h, w = img.shape[:2]
    scale = resize_to / min(h, w)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    resized = np.asarray(Image.fromarray(img).resize((new_w, new_h), _pil_filter(resample)))
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return resized[top:top + size, left:left + size]


def resize_exactly(img: np.ndarray, size: Tuple[int, int], resample: str = "bilinear") -> np.ndarray:
    """Resize (H, W, 3) uint8 to ``size`` (h, w) without keeping the aspect ratio (``resample``: see
    ``resize_center_crop``); returns (h, w, 3) uint8."""
    return np.asarray(Image.fromarray(img).resize((int(size[1]), int(size[0])), _pil_filter(resample)))


def _pil_filter(resample: str):
    return getattr(Image.Resampling, resample.upper())


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
