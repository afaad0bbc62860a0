"""Caffe ``.binaryproto`` mean images: legacy num/channels/height/width and ``shape`` BlobProtos read as mean.npy,
and through dvtoolbox.models.pixel_space as the original uses them (centre crop to the net's input)."""

import numpy as np
import pytest

from dvtoolbox.errors import UsageError
from dvtoolbox.models.caffe import read_blobproto_array
from dvtoolbox.models.pixel_space import load_mean, read_mean_file

from .helpers import ref_path


@pytest.mark.parametrize("name", ["mean.binaryproto", "mean_shape.binaryproto"])
def test_binaryproto_equals_npy(name):
    array = read_blobproto_array(ref_path(name))
    expected = np.load(ref_path("mean.npy"))
    assert array.dtype == np.float32 and array.shape == (1, 3, 36, 36)
    np.testing.assert_array_equal(array, expected)


@pytest.mark.parametrize("name", ["mean.binaryproto", "mean_shape.binaryproto", "mean.npy"])
def test_mean_file_cropped_to_the_input_like_numpy(name):
    expected = np.load(ref_path("mean.npy"))[0]
    np.testing.assert_array_equal(read_mean_file(ref_path(name)), expected)
    cropped = load_mean(ref_path(name), (32, 32))
    np.testing.assert_array_equal(cropped, expected[:, 2:34, 2:34])  # centre: (36 - 32) // 2 = 2 on each side


def test_not_a_blobproto(tmp_path):
    path = tmp_path / "bad.binaryproto"
    path.write_bytes(b"\xff\xff\xff\xff")
    with pytest.raises(UsageError, match="not a binary Caffe BlobProto"):
        read_blobproto_array(str(path))
    with pytest.raises(UsageError, match="cannot read mean file"):
        load_mean(str(path), (32, 32))
