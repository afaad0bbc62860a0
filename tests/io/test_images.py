"""Image scaling and writing against the original's formulas (image_misc.norm01 / norm01c) and OpenCV's conversion
of ``cv2.imwrite(f, 255 * im)`` (saturate_cast: cvRound, half to even, then clamp)."""

import numpy as np
import pytest
from PIL import Image

from dvtoolbox.io.images import encode_image, norm01, norm01c, save_image, to_uint8
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
