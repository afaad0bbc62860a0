"""The original's unit folders from hand-made top-N arrays on the tiny ReLU net."""

import os

import numpy as np
import pytest
import torch
from torch import nn

from dvtoolbox.errors import UsageError
from dvtoolbox.exemplars.unit_pages import INFO_HEADER, TopN, write_unit_pages
from dvtoolbox.io.images import load_image_rgb, to_uint8
from tests.exemplars.test_patches import TinyReLUNet, fixed_weights, np_gradient

BGR_TO_RGB = (2, 1, 0)
FILENAMES = ["a/im0.jpg", "a/im1.jpg", "b/im2.jpg"]
LABELS = [7, -1, 3]


def inputs():
    rng = np.random.default_rng(5)
    return [rng.normal(size=(3, 8, 8)) for _ in FILENAMES]


def relu_top():
    """Units 0..3 of "relu" (grid 8x8, field 3x3 with padding 1); unit 2 has an empty slot."""
    values = np.array([[5, 4, 3], [3.5, 2.25, 1], [9.125, 0.5, -np.inf], [1, 1, 1]], np.float32)
    images = np.array([[0, 1, 2], [2, 0, 1], [1, 2, -1], [0, 1, 2]], np.int64)
    positions = np.array([[[1, 1], [2, 2], [3, 3]], [[0, 5], [4, 4], [7, 7]], [[7, 0], [3, 6], [0, 0]],
                          [[1, 1], [1, 1], [1, 1]]], np.int64)
    return TopN("relu", True, values, images, positions)


def run(tmp_path, top, what=("maxes", "deconv", "deconv_norm", "backprop", "backprop_norm", "info"), brave=False,
        begin=1, end=3, num_top=3, net=None):
    xs = inputs()
    net = net or TinyReLUNet(fixed_weights()).eval()
    return write_unit_pages(net, top, FILENAMES, LABELS, lambda i: torch.tensor(xs[i][None], dtype=torch.float32),
                            str(tmp_path), begin, end, num_top, what, brave=brave, channel_swap_to_rgb=BGR_TO_RGB)


def expected_crop(arr, y, x):
    """The field of (y, x) on the 8x8 grid (rows y-1..y+1 clipped), in a 3x3 crop padded where it was cut: at the
    start when the field starts at row / column 0, at the end otherwise (the original's rule)."""
    out = np.zeros((arr.shape[0], 3, 3))
    r0, r1, c0, c1 = max(0, y - 1), min(8, y + 2), max(0, x - 1), min(8, x + 2)
    o0 = 3 - (r1 - r0) if r0 == 0 else 0
    p0 = 3 - (c1 - c0) if c0 == 0 else 0
    out[:, o0:o0 + r1 - r0, p0:p0 + c1 - c0] = arr[:, r0:r1, c0:c1]
    return out


def centred_png(arr):
    img = arr[::-1].transpose(1, 2, 0)
    return to_uint8(img / (max(2 * img.max(), -2 * img.min()) + 1e-10) + 0.5)


def norm_png(arr):
    n = np.sqrt((arr ** 2).sum(0))
    n = (n - n.min()) / (n.max() - n.min() + 1e-10)
    return to_uint8(np.repeat(n[:, :, None], 3, 2))


def test_layout_info_and_images(tmp_path):
    written = run(tmp_path, relu_top())
    files = sorted(os.path.relpath(os.path.join(d, f), tmp_path) for d, _, fs in os.walk(tmp_path) for f in fs)
    names = ["info.txt"] + [f"{p}_{r:03d}.png" for p in ("maxim", "deconv", "deconvnorm", "backprop", "backpropnorm")
                            for r in range(3)]
    expected = sorted([f"relu/unit_0001/{n}" for n in names]
                      + [f"relu/unit_0002/{n}" for n in names if not n.endswith("_002.png")])
    assert files == expected and sorted(os.path.relpath(p, tmp_path) for p in written) == expected
    info = (tmp_path / "relu" / "unit_0002" / "info.txt").read_text()
    assert info == INFO_HEADER + "\n1 9.125000 1 -1 7 0 a/im1.jpg\n1 0.500000 2 3 3 6 b/im2.jpg\n"
    xs, wts = inputs(), fixed_weights()
    for unit, rank, image, (y, x) in [(1, 0, 2, (0, 5)), (1, 2, 1, (7, 7)), (2, 0, 1, (7, 0)), (1, 1, 0, (4, 4))]:
        folder = tmp_path / "relu" / f"unit_{unit:04d}"
        xin = xs[image].astype(np.float32).astype(np.float64)
        maxim = load_image_rgb(str(folder / f"maxim_{rank:03d}.png"))
        np.testing.assert_array_equal(maxim, centred_png(expected_crop(xin, y, x)))
        for name, deconv in (("deconv", True), ("backprop", False)):
            grad = expected_crop(np_gradient(xin, wts, ("relu", (unit, y, x)), deconv), y, x)
            got = load_image_rgb(str(folder / f"{name}_{rank:03d}.png")).astype(int)
            assert np.abs(got - centred_png(grad).astype(int)).max() <= 1   # float32 vs float64 at a rounding edge
            got = load_image_rgb(str(folder / f"{name}norm_{rank:03d}.png")).astype(int)
            assert np.abs(got - norm_png(grad).astype(int)).max() <= 1


def test_fc_units_crop_the_whole_image_and_info_has_no_position(tmp_path):
    top = TopN("fc", False, np.array([[2.5, 1.5]], np.float32), np.array([[2, 0]], np.int64),
               np.zeros((1, 2, 2), np.int64))
    run(tmp_path, top, what=("maxes", "info"), begin=0, end=1, num_top=2)
    info = (tmp_path / "fc" / "unit_0000" / "info.txt").read_text()
    assert info == INFO_HEADER + "\n0 2.500000 2 3 b/im2.jpg\n0 1.500000 0 7 a/im0.jpg\n"
    maxim = load_image_rgb(str(tmp_path / "fc" / "unit_0000" / "maxim_000.png"))
    np.testing.assert_array_equal(maxim, centred_png(inputs()[2].astype(np.float32).astype(np.float64)))


def test_nothing_is_overwritten_without_brave(tmp_path):
    run(tmp_path, relu_top(), what=("info",))
    info = tmp_path / "relu" / "unit_0001" / "info.txt"
    info.write_text("mine")
    with pytest.raises(UsageError, match="cowardly refusing to overwrite"):
        run(tmp_path, relu_top(), what=("maxes", "info"))
    assert info.read_text() == "mine" and not (tmp_path / "relu" / "unit_0001" / "maxim_000.png").exists()
    run(tmp_path, relu_top(), what=("maxes", "info"), brave=True)
    assert info.read_text().startswith(INFO_HEADER)


BAD_REQUESTS = [  # (keyword arguments, a word of the message)
    (dict(begin=0, end=5), "idx_end"), (dict(begin=2, end=2), "idx_begin"), (dict(begin=-1, end=2), "idx_begin"),
    (dict(num_top=4), "num_top"), (dict(num_top=0), "num_top"), (dict(what=()), "nothing to do"),
    (dict(what=("maxes", "deconvs")), "unknown outputs"),
]


@pytest.mark.parametrize("kwargs,word", BAD_REQUESTS)
def test_bad_requests_write_nothing(tmp_path, kwargs, word):
    with pytest.raises(UsageError, match=word) as info:
        run(tmp_path, relu_top(), **kwargs)
    assert "\n" not in str(info.value) and os.listdir(tmp_path) == []


def test_deconv_of_a_net_without_relus_is_refused_before_any_file(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh()).eval()
    top = TopN("1", True, relu_top().values, relu_top().images, relu_top().positions)
    with pytest.raises(UsageError, match="deconv needs ReLUs"):
        run(tmp_path, top, net=net)
    assert os.listdir(tmp_path) == []
    run(tmp_path, top, what=("backprop", "info"), net=net)   # backprop needs no ReLU
    assert (tmp_path / "1" / "unit_0001" / "backprop_000.png").exists()


def test_a_value_the_model_does_not_reproduce_is_warned_once(tmp_path, caplog):
    top = relu_top()
    xs, wts = inputs(), fixed_weights()
    from tests.exemplars.test_patches import np_conv
    true = np.maximum(np_conv(xs[2], wts["w1"], wts["b1"]), 0)[1, 0, 5]
    values = top.values.copy()
    values[1, 0] = true + 0.05      # within the original's 0.1: silent
    values[1, 1] = 100.0            # not reproduced: one warning
    caplog.set_level("WARNING", logger="dvtoolbox.exemplars.unit_pages")
    run(tmp_path, TopN("relu", True, values, top.images, top.positions), begin=1, end=2, num_top=2,
        what=("deconv", "backprop"))
    warned = [r.getMessage() for r in caplog.records if "reproduced" in r.getMessage()]
    assert len(warned) == 1 and "unit 1 rank 1: recorded value 100" in warned[0]
