"""A run's files as the original wrote them: info.txt line by line against the example in the original's own
documentation, x0 and the images of info_big.pkl float64 and bit-identical to the original's draw, restarts from a
saved float64 image, and the JPEG pixels against OpenCV's own conversion (``cv2.imwrite(f, 255 * im)``)."""

import os
import pickle
import re

import numpy as np
import pytest
import torch
from torch import nn

from dvtoolbox.cli.optimize_image import main
from dvtoolbox.io import images as image_io
from dvtoolbox.models.pixel_space import InputContract
from dvtoolbox.models.registry import _MODELS, register_model
from tests.conftest import make_tiny
from tests.io.original_image_misc import original_norm01, original_norm01c

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")
# The original's documentation (doc/running_optimize_image.md there): its `print find_params` and `print
# find_results` listings of Table-1 row 3, seed 0, laid out as info.txt holds them (params, two blank lines,
# results). Its `cat info.txt` listing has the same lines indented 3 columns less than '%30s' makes them.
SEED_INFO = os.path.join(DATA, "original_opt_fc8_0130_0_info.txt")
ROW3 = ["--push-layer", "fc8", "--push-channel", "130", "--decay", "0.0001", "--blur-radius", "1.0",
        "--blur-every", "4", "--max-iter", "1000", "--lr-policy", "constant", "--lr-params", "{'lr': 100.0}"]


class Net227(nn.Module):
    """A small fixed-weight ImageNet-shaped net: (N, 3, 227, 227) BGR minus the mean -> fc8 (N, 1000)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 5, stride=4)
        self.pool = nn.AdaptiveMaxPool2d(6)
        self.fc8 = nn.Linear(4 * 6 * 6, 1000)
        rng = np.random.RandomState(11)
        with torch.no_grad():
            for param in self.parameters():
                param.copy_(torch.from_numpy(rng.normal(0, 0.3, tuple(param.shape)).astype(np.float32)))

    def forward(self, x):
        return self.fc8(self.pool(torch.relu(self.conv1(x / 64.0))).flatten(1))


def make_net227(weights="default"):
    model = Net227()
    model.input_contract = InputContract(size=(227, 227), channel_order="BGR", mean=(104.0, 117.0, 123.0),
                                         label_layers=("fc8",))
    return model.eval()


if "net227_test" not in _MODELS:
    register_model("net227_test")(make_net227)


def run(tmp_path, *flags):
    return main(["--output-prefix", str(tmp_path / "opt"), *flags], settings_dirs=[])


def load_big(tmp_path, stem):
    with open(tmp_path / f"opt_{stem}_info_big.pkl", "rb") as handle:
        return pickle.load(handle)


def test_info_txt_is_the_originals_line_by_line(tmp_path):
    """Table-1 row 3 as the original's documentation ran it: every line that does not depend on the network is
    the same text, every other line has the same field and the same number format."""
    assert run(tmp_path, "--model", "net227_test", *ROW3) == 0
    ours = (tmp_path / "opt_fc8_0130_0_info.txt").read_text().splitlines()
    with open(SEED_INFO) as handle:
        seed = handle.read().splitlines()
    assert len(ours) == len(seed) + 1 and ours[-1] == ""  # the final print's newline
    depends_on_the_net = ("best_ii", "best_obj", "best_xx", "dist", "idxmax", "ismax", "last_obj", "last_xx",
                          "majority_ii", "majority_obj", "majority_xx", "norm", "obj", "std")
    fields = [line.split(":")[0].strip() for line in seed]
    assert [line.split(":")[0].strip() for line in ours[:len(seed)]] == fields
    number = r"-?\d+(\.\d+)?(e[+-]\d+)?"
    for mine, theirs, field in zip(ours, seed, fields):
        if field in ("norm", "std"):  # iteration 0 is x0 itself (the same draw; neither mean clips it)
            assert mine.split(",")[0] == theirs.split(",")[0]
        if field not in depends_on_the_net:
            assert mine == theirs
        else:
            shape = re.sub(number, "N", theirs)
            assert re.sub(number, "N", mine) == shape, (mine, theirs)


def test_x0_and_images_are_float64_and_x0_is_the_originals_draw(tmp_path):
    assert run(tmp_path, "--model", "tiny_test", "--push-channel", "2", "--max-iter", "3") == 0
    params, results = load_big(tmp_path, "fc8_0002_0")
    np.random.seed(0)
    original_x0 = np.random.normal(0, 10, (3, 8, 8))
    assert results.x0.dtype == np.float64 and results.x0.tobytes() == original_x0.tobytes()
    assert all(getattr(results, k).dtype == np.float64 for k in ("best_xx", "last_xx"))
    assert all(type(v) is np.float32 for v in results.obj) and type(results.best_obj) is np.float32


@pytest.mark.parametrize("row", [
    ["--blur-radius", "0.5", "--blur-every", "4", "--small-norm-percentile", "50", "--lr-policy", "progress",
     "--lr-params", "{'max_lr': 100.0, 'desired_prog': 2.0}"],
    ["--decay", "0.0001", "--blur-radius", "1.0", "--blur-every", "4", "--lr-params", "{'lr': 100.0}"],
], ids=["row1", "row3"])
def test_restart_from_a_saved_float64_image_reproduces_the_rest(tmp_path, row):
    """Run 16 iterations; run 9 and save last_xx (iteration 8's image, float64) as .npy; start a third run there
    (--start-at, 8 iterations): its trace is iterations 8-15 of the first (blur every 4 keeps its phase)."""
    common = ["--model", "tiny_test", "--push-channel", "2", *row]
    assert run(tmp_path / "full", *common, "--max-iter", "16") == 0
    assert run(tmp_path / "half", *common, "--max-iter", "9") == 0
    _, full = load_big(tmp_path / "full", "fc8_0002_0")
    _, half = load_big(tmp_path / "half", "fc8_0002_0")
    saved = tmp_path / "x8.npy"
    np.save(saved, half.last_xx)
    assert run(tmp_path / "rest", *common, "--max-iter", "8", "--start-at", str(saved)) == 0
    _, rest = load_big(tmp_path / "rest", "fc8_0002_0")
    assert rest.x0.tobytes() == half.last_xx.tobytes()  # every bit of the float64 file
    np.testing.assert_allclose(rest.obj, full.obj[8:], rtol=1e-6, atol=1e-6 * np.abs(full.obj).max())
    np.testing.assert_allclose(rest.norm, full.norm[8:], rtol=1e-9)
    np.testing.assert_allclose(rest.last_xx, full.last_xx, rtol=1e-9, atol=1e-9)


def test_info_txt_prints_short_runs_and_int_defaults_as_the_original(tmp_path):
    assert run(tmp_path, "--model", "tiny_test", "--push-channel", "2", "--max-iter", "3", "--decay", "0") == 0
    text = (tmp_path / "opt_fc8_0002_0_info.txt").read_text().splitlines()
    assert "                         decay: 0.0" in text          # given: a float, as argparse made it
    assert "                      push_dir: 1" in text            # default: the original's int
    assert "           small_val_percentile: 0" not in text
    assert "          small_val_percentile: 0" in text
    obj_line = next(line for line in text if line.strip().startswith("obj:"))
    assert re.fullmatch(r" +obj: \[(-?\d+\.\d+(e[+-]\d+)?, ){2}-?\d+\.\d+(e[+-]\d+)?\]", obj_line)
    items = obj_line.split("[")[1].rstrip("]").split(", ")
    _, results = load_big(tmp_path, "fc8_0002_0")
    assert items == ["%.8g" % v if "." in "%.8g" % v else "%.8g.0" % v for v in results.obj]  # float32's repr


def test_jpeg_pixels_are_opencvs_conversion_of_255_v(tmp_path, monkeypatch):
    """The uint8 pixels handed to the JPEG encoder are what OpenCV's imwrite makes of ``255 * norm01c(x)``:
    checked against OpenCV itself (a lossless PNG through cv2.imencode / imdecode)."""
    cv2 = pytest.importorskip("cv2")
    encoded = {}
    real_fromarray = image_io.Image.fromarray

    def spy(arr, *args, **kwargs):
        encoded.setdefault("arrays", []).append(np.array(arr))
        return real_fromarray(arr, *args, **kwargs)

    monkeypatch.setattr(image_io.Image, "fromarray", spy)
    assert run(tmp_path, "--model", "tiny_test", "--push-channel", "2", "--max-iter", "5",
               "--lr-params", "{'lr': 300.0}") == 0
    _, results = load_big(tmp_path, "fc8_0002_0")
    mean = make_tiny().input_contract.mean_image((8, 8))
    best_rgb = np.transpose(results.best_xx, (1, 2, 0))  # the tiny net is RGB
    as_original = [original_norm01c(best_rgb, 0), original_norm01(best_rgb + np.transpose(mean, (1, 2, 0)))]
    for img, ours in zip(as_original, encoded["arrays"][:2]):  # best_X.jpg, best_Xpm.jpg
        ok, png = cv2.imencode(".png", np.ascontiguousarray((255 * img)[:, :, ::-1]))  # BGR, as imwrite takes it
        assert ok
        expected = cv2.imdecode(png, cv2.IMREAD_UNCHANGED)[:, :, ::-1]
        np.testing.assert_array_equal(ours, expected)
        assert not np.array_equal(ours, np.floor(255 * img).astype(np.uint8))  # truncation would differ
