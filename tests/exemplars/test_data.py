"""The image list (filelist, folder tree), the preprocessing (model contract; Caffe's 256 resize) and the batches."""

import numpy as np
import pytest
import torch
from PIL import Image

from dvtoolbox.errors import UsageError
from dvtoolbox.io.images import load_image_rgb
from dvtoolbox.exemplars.data import (ImageList, Preprocess, image_batches, preprocess_for, read_filelist,
                                      scan_folder)
from dvtoolbox.models.pixel_space import InputContract

CONTRACT = InputContract(size=(8, 8), channel_order="BGR", mean=(10.0, 20.0, 30.0))


def photo(seed, h=12, w=16):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def write_folder(root):
    (root / "b").mkdir(parents=True)
    (root / "a").mkdir()
    Image.fromarray(photo(1)).save(root / "b" / "z.png")
    Image.fromarray(photo(2)).save(root / "a" / "y.PNG")
    Image.fromarray(photo(3)).save(root / "x.jpg")
    (root / "notes.txt").write_text("not an image")
    return root


def test_filelist_with_and_without_labels(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("a/1.jpg 7\n\nb/2.jpg\n  c/3.png   0  \n")
    images = read_filelist("/data", str(listing))
    assert images.paths == ["a/1.jpg", "b/2.jpg", "c/3.png"] and images.labels == [7, -1, 0]
    assert images.full_path(1) == "/data/b/2.jpg"


@pytest.mark.parametrize("text, message", [
    ("a.jpg 1 2\n", "line 1: expected 'path \\[label\\]', got 3 fields"),
    ("a.jpg 1\nb.jpg cat\n", "line 2: the label 'cat' is not an integer"),
    ("\n\n", "names no image"),
])
def test_bad_filelists_are_one_line(tmp_path, text, message):
    listing = tmp_path / "list.txt"
    listing.write_text(text)
    with pytest.raises(UsageError, match=message) as info:
        read_filelist(str(tmp_path), str(listing))
    assert info.value.fields == ("filelist",) and "\n" not in str(info.value)


def test_a_missing_filelist(tmp_path):
    with pytest.raises(UsageError, match="cannot read the filelist"):
        read_filelist(str(tmp_path), str(tmp_path / "none.txt"))


def test_folder_tree_sorted_recursive_images_only(tmp_path):
    images = scan_folder(str(write_folder(tmp_path / "data")))
    assert images.paths == ["a/y.PNG", "b/z.png", "x.jpg"] and images.labels == [-1, -1, -1]
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="holds no image"):
        scan_folder(str(tmp_path / "empty"))
    with pytest.raises(UsageError, match="is not a folder"):
        scan_folder(str(tmp_path / "missing"))


def test_the_models_own_preprocessing():
    """Shorter side resized to 8 (16x12 -> 11x8), the centre 8x8 (columns 1..8), BGR, minus the mean."""
    rgb = photo(4)
    x = Preprocess(CONTRACT)(rgb)
    resized = np.asarray(Image.fromarray(rgb).resize((11, 8), Image.BILINEAR)).astype(np.float32)
    expected = resized[:, 1:9, ::-1].transpose(2, 0, 1) - np.array([10.0, 20.0, 30.0], np.float32)[:, None, None]
    np.testing.assert_array_equal(x.numpy(), expected)


def test_the_originals_caffe_preprocessing():
    """caffe.Classifier(image_dims=(256, 256)): the whole image to 256x256 (aspect not kept), centre crop."""
    contract = InputContract(size=(227, 227), channel_order="BGR", mean=(104.0, 117.0, 123.0))
    rgb = photo(5, 300, 500)
    x = Preprocess(contract, caffe=True)(rgb)
    resized = np.asarray(Image.fromarray(rgb).resize((256, 256), Image.BILINEAR)).astype(np.float32)
    expected = resized[14:241, 14:241, ::-1].transpose(2, 0, 1) - np.array([104.0, 117.0, 123.0],
                                                                           np.float32)[:, None, None]
    assert x.shape == (3, 227, 227)
    np.testing.assert_array_equal(x.numpy(), expected)


def test_caffe_models_keep_the_originals_rule(tiny_model):
    assert preprocess_for(tiny_model) == Preprocess(tiny_model.input_contract, False)
    tiny_model.caffe_layer_outputs = {}
    assert preprocess_for(tiny_model).caffe


@pytest.mark.parametrize("workers", [0, 1])
def test_batches_in_list_order_with_unreadable_images_kept_as_errors(tmp_path, workers):
    root = write_folder(tmp_path / "data")
    (root / "broken.png").write_bytes(b"not a png")
    images = ImageList(["x.jpg", "broken.png", "a/y.PNG", "gone.png", "b/z.png"], [0, 1, 2, 3, 4], str(root))
    preprocess = Preprocess(CONTRACT)
    batches = list(image_batches(images, [0, 1, 2, 3, 4], preprocess, 2, workers))
    indices = torch.cat([b[1] for b in batches]).tolist()
    errors = [e for b in batches for e in b[2]]
    assert indices == [0, 1, 2, 3, 4]
    assert [bool(e) for e in errors] == [False, True, False, True, False]
    assert "broken.png" in errors[1] and "\n" not in errors[1]
    inputs = torch.cat([b[0] for b in batches])
    assert (inputs[1] == 0).all() and (inputs[3] == 0).all()
    np.testing.assert_array_equal(inputs[2].numpy(), preprocess(load_image_rgb(str(root / "a" / "y.PNG"))).numpy())
