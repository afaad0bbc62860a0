"""Image scaling and writing against the original's formulas (image_misc.norm01 / norm01c) and OpenCV's conversion
of ``cv2.imwrite(f, 255 * im)`` (saturate_cast: cvRound, half to even, then clamp)."""

import os

import numpy as np
import pytest
from PIL import Image

from dvtoolbox.errors import UsageError
from dvtoolbox.io.images import encode_image, load_image_rgb, load_image_rgba, norm01, norm01c, save_image, to_uint8
from tests.io.image_files import BAD_FILES, BAD_IDS, LIMIT, png_by_hand
from tests.io.original_image_misc import original_norm01, original_norm01c


def test_norm01_and_norm01c_equal_the_original_formulas_bit_for_bit():
    rng = np.random.RandomState(1)
    arr = rng.randn(5, 6, 3) * 20 + 3
    np.testing.assert_array_equal(norm01(arr), original_norm01(arr))
    np.testing.assert_array_equal(norm01c(arr, 0), original_norm01c(arr, 0))
    assert norm01c(arr, 0).min() >= 0 and norm01c(arr, 0).max() <= 1
    assert norm01c(np.zeros((2, 2, 3)), 0).tolist() == np.full((2, 2, 3), 0.5).tolist()
    assert norm01(np.full((2, 2, 3), 7.0)).tolist() == np.zeros((2, 2, 3)).tolist()  # the original's black


def saturate_cast_uchar(v):
    """OpenCV's ``saturate_cast<uchar>(double)`` for one value, as its source states it: ``cvRound`` (the SSE2
    ``cvtsd2si``: nearest, ties to even; NaN, inf and anything outside int32 give INT_MIN) then clamp to 0..255."""
    if not np.isfinite(v):
        return 0
    r = round(v)  # Python's round: nearest, ties to even
    if not -2**31 <= r <= 2**31 - 1:
        r = -2**31
    return min(max(r, 0), 255)


def test_to_uint8_is_opencvs_saturate_cast_of_255_v():
    values = np.array([0.0, 0.5, 1 / 255 - 1e-9, 1.0, 0.999, 0.5 / 255, 1.5 / 255, 2.5 / 255, 254.5 / 255,
                       1.002, -0.001, -0.003, np.nan, np.inf, -np.inf, 1e9, -1e9, 127.5 / 255])
    expected = [saturate_cast_uchar(255.0 * v) for v in values]
    assert to_uint8(values).tolist() == expected
    # half to even, not floor: 127.5 -> 128, 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, 254.5 -> 254
    assert to_uint8(np.array([127.5, 0.5, 1.5, 2.5, 254.5]) / 255).tolist() == [128, 0, 2, 2, 254]
    assert to_uint8(np.array([0.5, 0.999])).tolist() == [128, 255]  # floor would give 127, 254
    assert to_uint8(np.array([np.nan, 1e9, -1e9, 1.7])).tolist() == [0, 0, 0, 255]


def test_to_uint8_matches_the_rule_on_random_values():
    values = np.random.RandomState(3).uniform(-0.1, 1.1, 2000)
    assert to_uint8(values).tolist() == [saturate_cast_uchar(255.0 * v) for v in values]


def test_png_is_lossless_and_jpeg_is_written(tmp_path):
    rng = np.random.RandomState(2)
    img = rng.randint(0, 256, (7, 9, 3)) / 255.0
    save_image(str(tmp_path / "a.png"), img)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), to_uint8(img))
    save_image(str(tmp_path / "a.jpg"), img)
    with Image.open(tmp_path / "a.jpg") as jpg:
        assert jpg.format == "JPEG" and jpg.size == (9, 7)
    assert encode_image(np.zeros((2, 2, 4)), "PNG")[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="must end in .jpg"):
        save_image(str(tmp_path / "a.gif"), img)


# ------------------------------------------------------------------------------------------------ reading modes
# Each file is written by Pillow (or by hand, for what Pillow cannot write) from a known array; what the loader
# returns is compared with a numpy restatement of what the file shows, written here independently of the loader.

def rng(seed=0):
    return np.random.RandomState(seed)


def grey3(grey):
    return np.repeat(np.asarray(grey)[:, :, None], 3, axis=2)


def over_white_reference(rgb, alpha):
    """Straight colour over white in float64, rounded to nearest (c a / 255 is never half-way: no tie rule)."""
    a = np.asarray(alpha, np.float64)[:, :, None] / 255.0
    return np.rint(np.asarray(rgb, np.float64) * a + 255.0 * (1.0 - a)).astype(np.uint8)


def saved(tmp_path, image, name, **options):
    """Save a PIL image, check Pillow reads it back in the same mode (the case the test is about), return its path."""
    path = tmp_path / name
    image.save(path, **options)
    with Image.open(path) as back:
        assert back.mode == image.mode, (back.mode, image.mode)
    return str(path)


SIXTEEN = np.array([[0, 1, 128, 129, 256, 257], [385, 386, 32767, 32768, 65407, 65535]], np.uint16)  # edges of
# round(v / 257): 128 -> 0 (0.498), 129 -> 1 (0.502), 385 -> 1 (1.498), 386 -> 2, 65407 -> 254 (254.5 - 0.5/257)


def sixteen_reference(v):
    return grey3(np.rint(np.asarray(v, np.float64) * 255.0 / 65535.0).astype(np.uint8))


def case_1(tmp_path):
    bits = rng().rand(5, 7) > 0.5
    return saved(tmp_path, Image.fromarray(bits), "a.png"), grey3(np.where(bits, 255, 0).astype(np.uint8))


def case_l(tmp_path):
    grey = rng().randint(0, 256, (5, 7)).astype(np.uint8)
    return saved(tmp_path, Image.fromarray(grey, "L"), "a.png"), grey3(grey)


def case_la(tmp_path):
    la = rng().randint(0, 256, (5, 7, 2)).astype(np.uint8)
    la[0, :3, 1] = (0, 255, 128)
    return saved(tmp_path, Image.fromarray(la, "LA"), "a.png"), over_white_reference(grey3(la[..., 0]), la[..., 1])


def palette_image(seed=0):
    colours = rng(seed).choice(256 ** 3, 256, replace=False)  # distinct colours
    palette = np.stack([colours >> 16, (colours >> 8) & 255, colours & 255], axis=1).astype(np.uint8)
    index = rng(seed + 1).randint(0, 256, (5, 7)).astype(np.uint8)
    image = Image.fromarray(index, "P")
    image.putpalette(palette.tobytes())
    return image, palette, index


def case_p(tmp_path):
    image, palette, index = palette_image()
    return saved(tmp_path, image, "a.png"), palette[index]


def case_p_alpha_table(tmp_path):
    image, palette, index = palette_image()
    alpha = rng(5).randint(0, 256, 256).astype(np.uint8)
    return (saved(tmp_path, image, "a.png", transparency=alpha.tobytes()),
            over_white_reference(palette[index], alpha[index]))


def case_p_gif_index(tmp_path):
    image, palette, index = palette_image()
    key = int(index[2, 3])
    shown = np.where((index == key)[:, :, None], np.uint8(255), palette[index])
    return saved(tmp_path, image, "a.gif", transparency=key), shown


def case_rgb(tmp_path):
    rgb = rng().randint(0, 256, (5, 7, 3)).astype(np.uint8)
    return saved(tmp_path, Image.fromarray(rgb), "a.png"), rgb


def case_rgb_key(tmp_path):
    rgb = rng().randint(0, 256, (5, 7, 3)).astype(np.uint8)
    rgb[1, 1] = rgb[3, 4] = rgb[0, 0]
    shown = rgb.copy()
    shown[(rgb == rgb[0, 0]).all(axis=2)] = 255
    return saved(tmp_path, Image.fromarray(rgb), "a.png", transparency=tuple(int(c) for c in rgb[0, 0])), shown


def case_l_key(tmp_path):
    grey = rng().randint(0, 256, (5, 7)).astype(np.uint8)
    return (saved(tmp_path, Image.fromarray(grey, "L"), "a.png", transparency=int(grey[2, 2])),
            grey3(np.where(grey == grey[2, 2], 255, grey).astype(np.uint8)))


def case_rgba(tmp_path):
    rgba = rng().randint(0, 256, (5, 7, 4)).astype(np.uint8)
    rgba[0, :3, 3] = (0, 255, 1)
    return saved(tmp_path, Image.fromarray(rgba, "RGBA"), "a.png"), over_white_reference(rgba[..., :3], rgba[..., 3])


def case_cmyk(tmp_path):
    cmyk = rng().randint(0, 256, (5, 7, 4)).astype(np.uint8)
    cmyk[0, :4] = [[0, 0, 0, 0], [255, 255, 255, 255], [255, 0, 0, 0], [0, 0, 0, 128]]
    cmy, k = cmyk[..., :3] / 255.0, cmyk[..., 3:] / 255.0
    shown = np.rint(255.0 * (1.0 - cmy) * (1.0 - k)).astype(np.uint8)  # subtractive inks, no colour profile
    return saved(tmp_path, Image.fromarray(cmyk, "CMYK"), "a.tif"), shown


def case_ycbcr(tmp_path):
    ycc = rng().randint(0, 256, (5, 7, 3)).astype(np.uint8)
    ycc[0, :3] = [[0, 128, 128], [255, 128, 128], [128, 0, 255]]
    shown = np.empty_like(ycc)
    for (i, j), _ in np.ndenumerate(ycc[..., 0]):  # JFIF, one pixel at a time
        y, cb, cr = (float(v) for v in ycc[i, j])
        rgb = (y + 1.402 * (cr - 128), y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128), y + 1.772 * (cb - 128))
        shown[i, j] = [min(max(round(v), 0), 255) for v in rgb]
    return saved(tmp_path, Image.fromarray(ycc, "YCbCr"), "a.tif"), shown


def case_i16_png(tmp_path):
    return saved(tmp_path, Image.fromarray(SIXTEEN), "a.png"), sixteen_reference(SIXTEEN)


def case_i16_key(tmp_path):
    shown = sixteen_reference(SIXTEEN)
    shown[SIXTEEN == 32768] = 255
    return saved(tmp_path, Image.fromarray(SIXTEEN), "a.png", transparency=32768), shown


def case_i16b_tiff(tmp_path):
    image = Image.frombytes("I;16B", SIXTEEN.shape[::-1], SIXTEEN.astype(">u2").tobytes())
    return saved(tmp_path, image, "a.tif"), sixteen_reference(SIXTEEN)


def case_i32_tiff(tmp_path):
    return saved(tmp_path, Image.fromarray(SIXTEEN.astype(np.int32)), "a.tif"), sixteen_reference(SIXTEEN)


def case_f_tiff(tmp_path):
    values = np.concatenate([rng().rand(2, 6), [[0.0, 1.0, 0.5, 1 / 255, 254.4 / 255, 0.9999]]]).astype(np.float32)
    shown = grey3(np.array([[round(255.0 * float(v)) for v in row] for row in values], np.uint8))
    return saved(tmp_path, Image.fromarray(values), "a.tif"), shown


def case_rgb16_png(tmp_path):
    """Pillow reads 16-bit colour PNGs as RGB(A) from each sample's high byte: v >> 8 (within one level of
    round(v / 257))."""
    samples = rng().randint(0, 65536, (5, 7, 3))
    return str(png_by_hand(tmp_path / "a.png", samples, 2, 16)), (samples // 256).astype(np.uint8)


def case_rgba16_png(tmp_path):
    samples = rng().randint(0, 65536, (5, 7, 4))
    high = samples // 256
    return str(png_by_hand(tmp_path / "a.png", samples, 6, 16)), over_white_reference(high[..., :3], high[..., 3])


MODE_CASES = {name[5:]: case for name, case in sorted(globals().items()) if name.startswith("case_")}


@pytest.mark.parametrize("name", sorted(MODE_CASES))
def test_each_mode_loads_as_what_it_shows(tmp_path, name):
    path, shown = MODE_CASES[name](tmp_path)
    loaded = load_image_rgb(path)
    assert loaded.dtype == np.uint8 and loaded.shape == shown.shape
    np.testing.assert_array_equal(loaded, shown)


def test_the_16_bit_grey_png_of_the_issue_is_no_longer_white(tmp_path):
    ramp = (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)   # 8-bit level g stored as 257 g
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    np.testing.assert_array_equal(load_image_rgb(str(tmp_path / "ramp.png")),
                                  grey3(np.arange(256, dtype=np.uint8).reshape(16, 16)))


def test_ycbcr_is_within_one_level_of_pillows_own_conversion(tmp_path):
    ycc = Image.fromarray(rng(3).randint(0, 256, (32, 32, 3)).astype(np.uint8), "YCbCr")
    path = saved(tmp_path, ycc, "a.tif")
    assert np.abs(load_image_rgb(path).astype(int) - np.asarray(ycc.convert("RGB")).astype(int)).max() <= 1


def test_cmyk_equals_pillows_own_conversion(tmp_path):
    cmyk = Image.fromarray(rng(4).randint(0, 256, (32, 32, 4)).astype(np.uint8), "CMYK")
    np.testing.assert_array_equal(load_image_rgb(saved(tmp_path, cmyk, "a.tif")), np.asarray(cmyk.convert("RGB")))


def test_load_image_rgba_keeps_straight_alpha_and_is_opaque_without_it(tmp_path):
    rgba = rng().randint(0, 256, (5, 7, 4)).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_image_rgba(str(tmp_path / "a.png")), rgba)
    image, palette, index = palette_image()
    alpha = rng(5).randint(0, 256, 256).astype(np.uint8)
    image.save(tmp_path / "p.png", transparency=alpha.tobytes())
    np.testing.assert_array_equal(load_image_rgba(str(tmp_path / "p.png")),
                                  np.concatenate([palette[index], alpha[index][:, :, None]], axis=2))
    Image.fromarray(SIXTEEN).save(tmp_path / "g.png")
    np.testing.assert_array_equal(load_image_rgba(str(tmp_path / "g.png")),
                                  np.concatenate([sixteen_reference(SIXTEEN), np.full((2, 6, 1), 255)], axis=2))


# EXIF orientation: where the stored row 0 and column 0 are shown (EXIF 2.32, tag 0x0112), as array operations.
SHOWN_BY_ORIENTATION = {
    1: lambda a: a,                                   # row 0 top, column 0 left
    2: lambda a: a[:, ::-1],                          # row 0 top, column 0 right
    3: lambda a: a[::-1, ::-1],                       # row 0 bottom, column 0 right
    4: lambda a: a[::-1, :],                          # row 0 bottom, column 0 left
    5: lambda a: a.transpose(1, 0, 2),                # row 0 left, column 0 top
    6: lambda a: np.rot90(a, -1),                     # row 0 right, column 0 top
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),    # row 0 right, column 0 bottom
    8: lambda a: np.rot90(a, 1),                      # row 0 left, column 0 bottom
}


def exif_with_orientation(value):
    exif = Image.Exif()
    exif[0x0112] = value
    return exif


@pytest.mark.parametrize("orientation", sorted(SHOWN_BY_ORIENTATION))
def test_exif_orientation_is_applied_to_png(tmp_path, orientation):
    stored = rng().randint(0, 256, (5, 7, 3)).astype(np.uint8)
    Image.fromarray(stored).save(tmp_path / "a.png", exif=exif_with_orientation(orientation))
    np.testing.assert_array_equal(load_image_rgb(str(tmp_path / "a.png")), SHOWN_BY_ORIENTATION[orientation](stored))


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied_to_a_jpeg_photograph(tmp_path, orientation):
    photo = Image.fromarray(rng().randint(0, 256, (16, 24, 3)).astype(np.uint8))
    photo.save(tmp_path / "plain.jpg", quality=90)
    photo.save(tmp_path / "turned.jpg", quality=90, exif=exif_with_orientation(orientation))
    with Image.open(tmp_path / "plain.jpg") as plain:
        decoded = np.asarray(plain.convert("RGB"))   # the same compressed pixels, no orientation
    np.testing.assert_array_equal(load_image_rgb(str(tmp_path / "turned.jpg")),
                                  SHOWN_BY_ORIENTATION[orientation](decoded))


def test_exif_orientation_turns_a_16_bit_grey_image_too(tmp_path):
    Image.fromarray(SIXTEEN).save(tmp_path / "a.png", exif=exif_with_orientation(6))
    np.testing.assert_array_equal(load_image_rgb(str(tmp_path / "a.png")), np.rot90(sixteen_reference(SIXTEEN), -1))


# ------------------------------------------------------------------------------------------------ bad image files
@pytest.mark.parametrize("make, message", BAD_FILES, ids=BAD_IDS)
@pytest.mark.parametrize("load", [load_image_rgb, load_image_rgba])
def test_a_bad_image_file_is_one_line_naming_it(tmp_path, make, message, load):
    path = str(make(tmp_path))
    with pytest.raises(UsageError) as caught:
        load(path)
    text = str(caught.value)
    assert "\n" not in text and text.startswith(f"image {path!r}") and message in text, text
    assert caught.value.__cause__ is None                  # no chained traceback behind it
    assert Image.MAX_IMAGE_PIXELS == LIMIT                   # the guard is not lifted


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_is_one_line(tmp_path):
    path = tmp_path / "locked.png"
    Image.new("RGB", (2, 2)).save(path)
    path.chmod(0)
    with pytest.raises(UsageError, match="cannot be read: Permission denied"):
        load_image_rgb(str(path))


def test_a_lower_limit_set_by_the_library_user_is_respected(tmp_path, monkeypatch):
    Image.new("RGB", (4, 3)).save(tmp_path / "a.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    with pytest.raises(UsageError, match=r"has 12 pixels, over Pillow's decompression-bomb limit of 10 pixels"):
        load_image_rgb(str(tmp_path / "a.png"))
