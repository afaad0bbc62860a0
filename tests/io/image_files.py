"""Image files for the reading tests: a PNG written by hand from the specification (what Pillow cannot write:
16-bit colour, a header announcing a decompression bomb) and a table of bad image files, each with what the one-line
error says about it."""

import numpy as np
from PIL import Image

RNG = np.random.RandomState


def png_by_hand(path, samples, color_type, bit_depth, size=None):
    """A PNG written from the specification (signature, IHDR, one IDAT of unfiltered rows, IEND): ``samples``
    (H, W, C) integers of ``bit_depth`` 8 or 16; ``size`` (w, h) overrides the header's size (no pixel data then)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w = samples.shape[:2]
    w, h = size or (w, h)
    rows = b"" if size else b"".join(b"\x00" + row.astype(">u2" if bit_depth == 16 else np.uint8).tobytes()
                                     for row in samples)
    header = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))
    return path


LIMIT = Image.MAX_IMAGE_PIXELS   # Pillow's default decompression-bomb limit, 89478485 pixels


def bad_folder(tmp_path):
    (tmp_path / "photos.png").mkdir()
    return tmp_path / "photos.png"


def bad_text(tmp_path):
    (tmp_path / "notes.png").write_text("not an image\n")
    return tmp_path / "notes.png"


def bad_empty(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    return tmp_path / "empty.jpg"


def bad_truncated_png(tmp_path):
    data = png_by_hand(tmp_path / "whole.png", RNG(0).randint(0, 256, (32, 32, 3)), 2, 8).read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:len(data) // 2])
    return tmp_path / "cut.png"


def bad_truncated_jpeg(tmp_path):
    Image.fromarray(RNG(0).randint(0, 256, (64, 64, 3)).astype(np.uint8)).save(tmp_path / "whole.jpg")
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[:len(data) // 2])
    return tmp_path / "cut.jpg"


def bad_damaged_png(tmp_path):
    data = bytearray(png_by_hand(tmp_path / "whole.png", RNG(0).randint(0, 256, (32, 32, 3)), 2, 8).read_bytes())
    data[60:80] = bytes(20)                                 # zeros inside the compressed pixel data
    (tmp_path / "bad.png").write_bytes(bytes(data))
    return tmp_path / "bad.png"


def bad_bomb_warning(tmp_path):      # 100 000 000 pixels: over the limit, under twice it (Pillow only warns)
    return png_by_hand(tmp_path / "bomb.png", np.zeros((1, 1, 3)), 2, 8, size=(10000, 10000))


def bad_bomb_error(tmp_path):        # 400 000 000 pixels: over twice the limit (Pillow raises)
    return png_by_hand(tmp_path / "bomb.png", np.zeros((1, 1, 3)), 2, 8, size=(20000, 20000))


def bad_int32_range(tmp_path):
    Image.fromarray(np.array([[0, 70000]], np.int32)).save(tmp_path / "i.tif")
    return tmp_path / "i.tif"


def bad_float_range(tmp_path):
    Image.fromarray(np.array([[0.0, 2.5]], np.float32)).save(tmp_path / "f.tif")
    return tmp_path / "f.tif"


def bad_float_nan(tmp_path):
    Image.fromarray(np.array([[0.0, np.nan]], np.float32)).save(tmp_path / "f.tif")
    return tmp_path / "f.tif"


def bad_lab(tmp_path):
    Image.new("LAB", (2, 2)).save(tmp_path / "lab.tif")
    return tmp_path / "lab.tif"


BAD_FILES = [  # (maker, what the one line says)
    (lambda p: p / "missing.png", "no such file"),
    (bad_folder, "is a folder, not an image file"),
    (bad_text, "is not an image file Pillow can read"),
    (bad_empty, "is not an image file Pillow can read"),
    (bad_truncated_png, "is truncated or damaged"),
    (bad_truncated_jpeg, "is truncated or damaged"),
    (bad_damaged_png, "is truncated or damaged"),
    (bad_bomb_warning, f"has 100000000 pixels, over Pillow's decompression-bomb limit of {LIMIT} pixels"),
    (bad_bomb_error, f"has 400000000 pixels, over Pillow's decompression-bomb limit of {LIMIT} pixels"),
    (bad_int32_range, "32-bit integer image with values 0..70000"),
    (bad_float_range, "floating-point image with values 0..2.5: only 0..1 is read"),
    (bad_float_nan, "floating-point image with values 0..0 and NaN or infinite ones"),
    (bad_lab, "has Pillow mode 'LAB', which is not read"),
]
BAD_IDS = ["missing", "folder", "text", "empty", "truncated png", "truncated jpeg", "damaged png", "bomb warning",
           "bomb error", "int32 range", "float range", "float nan", "lab"]
