"""Image scaling and writing against the original's formulas (image_misc.norm01 / norm01c, matplotlib's imsave)."""

import numpy as np
import pytest
from PIL import Image

from dvtoolbox.io.images import encode_image, norm01, norm01c, save_image, to_uint8


def original_norm01c(arr, center):
    arr = arr.copy() - center
    arr /= max(2 * arr.max(), -2 * arr.min())
    return arr + 0.5


def test_norm01_and_norm01c_equal_the_original_formulas():
    rng = np.random.RandomState(1)
    arr = rng.randn(5, 6, 3) * 20 + 3
    np.testing.assert_allclose(norm01(arr), (arr - arr.min()) / (arr.max() - arr.min()))
    np.testing.assert_allclose(norm01c(arr, 0), original_norm01c(arr, 0))
    assert norm01c(arr, 0).min() >= 0 and norm01c(arr, 0).max() <= 1
    assert norm01c(np.zeros((2, 2, 3)), 0).tolist() == np.full((2, 2, 3), 0.5).tolist()
    assert norm01(np.full((2, 2, 3), 7.0)).tolist() == np.full((2, 2, 3), 0.5).tolist()


def test_to_uint8_truncates_like_matplotlib_imsave():
    values = np.array([0.0, 0.5, 1 / 255 - 1e-9, 1.0, 0.999])
    assert to_uint8(values).tolist() == [0, 127, 0, 255, 254]


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
