"""find_max_acts.py then crop_max_patches.py on every model family the project reads: the embedded
EfficientNet-Lite0, a Caffe net written by real Caffe (the original's positional forms), a torchvision and a timm
model with random weights, and a user's module (a factory, and torch.save'd files under the trust rule); both
precision modes; a kill during a write.

Each family's tracker file is checked against a direct forward pass of the same network (built here by the family's
own means, hooked by its own module names, no LayerCapture and no layout code): for every unit of every layer, the
top images, values and positions equal the brute-force ranking of the recorded images. The crops exist at the
receptive field's size, restated from the layers' kernels and strides, and crop_max_patches reproduces every recorded
value (it warns otherwise): the random weights are the same network in both commands.
"""

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dvtoolbox.cli.crop_max_patches import main as crop_main
from dvtoolbox.cli.find_max_acts import main as find_main
from dvtoolbox.exemplars import unit_pages
from dvtoolbox.exemplars.model_run import value_rtol, value_tolerance
from dvtoolbox.exemplars.tracker import load_maxes
from dvtoolbox.io.images import load_image_rgb
from dvtoolbox.models.caffe.build import load_caffe_model
from dvtoolbox.models.pixel_space import resize_center_crop
from dvtoolbox.models.registry import create_model
from tests.folder_state import folder_state

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "tests" / "data" / "images"
CAFFE = ROOT / "tests" / "data" / "caffe_reference"
PHOTOS = ("ILSVRC2012_val_00006451.jpg", "ILSVRC2012_val_00006491.jpg", "ILSVRC2012_val_00029739.jpg")
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
USER_MODULE = "dvt_user_famnets"
USER_CODE = '''
    """A user's networks, for the model-family tests: random weights from torch's RNG."""
    import torch
    from torch import nn


    class FamNet(nn.Module):
        """conv1 (3 -> 6, 3x3, pad 1), relu, 2x2 max pool, conv2 (6 -> 8, 3x3, pad 1), relu, mean, fc (8 -> 5).
        32 x 32 input, which it declares."""

        default_size = (32, 32)

        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
            self.pool = nn.MaxPool2d(2)
            self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
            self.fc = nn.Linear(8, 5)

        def forward(self, x):
            x = self.pool(torch.relu(self.conv1(x)))
            return self.fc(torch.relu(self.conv2(x)).mean((2, 3)))


    def build():
        return FamNet()
'''
FAMNET_FIELD = [(3, 1), (2, 2), (3, 1)]  # conv1, pool, conv2: (kernel, stride)


@pytest.fixture
def filelist(tmp_path):
    path = tmp_path / "photos.txt"
    path.write_text("".join(f"{name} {i + 4}\n" for i, name in enumerate(PHOTOS)))
    return str(path)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """The user's module file in a folder on the import path (as PYTHONPATH puts it); forgotten afterwards."""
    folder = tmp_path / "usercode"
    folder.mkdir()
    (folder / f"{USER_MODULE}.py").write_text(textwrap.dedent(USER_CODE))
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    sys.modules.pop(USER_MODULE, None)


def find(*argv):
    try:
        return find_main(["--device", "cpu", "--workers", "0", *argv])
    except SystemExit as exc:  # argparse's own errors
        return exc.code


def crop(*argv):
    try:
        return crop_main(["--device", "cpu", *argv])
    except SystemExit as exc:
        return exc.code


# ---------------------------------------------------------------------------------------------------- references


def field_size(layers):
    """The receptive field's side of a chain of (kernel, stride) layers: each adds (k - 1) x the input's stride."""
    size, jump = 1, 1
    for kernel, stride in layers:
        size += (kernel - 1) * jump
        jump *= stride
    return size


def hooked(net, module, x):
    """The output of ``module`` (a submodule of net) in the forward pass of x, without gradients."""
    seen = []
    handle = module.register_forward_hook(lambda _m, _i, out: seen.append(out.detach().float()))
    try:
        with torch.no_grad():
            net(x)
    finally:
        handle.remove()
    return seen[0]


def photo_crops(size):
    """(I, size, size, 3) uint8: the photographs' centre squares, the shorter side resized to ``size``."""
    return np.stack([resize_center_crop(load_image_rgb(str(IMAGES / p)), size, size) for p in PHOTOS])


def normalised(size, mean, std):
    """(I, 3, size, size) float32: the photographs as torchvision and timm feed them, (rgb / 255 - mean) / std."""
    rgb = photo_crops(size).astype(np.float32) / 255
    return torch.from_numpy(((rgb - mean) / std).transpose(0, 3, 1, 2).astype(np.float32))


def caffe_inputs(size, mean_bgr=(104.0, 117.0, 123.0)):
    """(I, 3, size, size): the original find_max_acts.py's rule restated: the whole photograph resized to 256 x 256
    (Pillow bilinear), its centre size x size, BGR, minus the mean."""
    out = []
    for p in PHOTOS:
        big = np.asarray(Image.fromarray(load_image_rgb(str(IMAGES / p))).resize((256, 256), Image.BILINEAR))
        top = (256 - size) // 2
        bgr = big[top:top + size, top:top + size, ::-1].astype(np.float32) - np.asarray(mean_bgr, np.float32)
        out.append(bgr.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(out))


def ranked(acts):
    """The brute-force top of every unit over the images: acts (I, C, H, W) or (I, C) -> values (C, I), images
    (C, I), positions (C, I, 2), each unit's images ranked by value, ties by image index; a conv unit's value its
    maximum over positions, the position the first in row-major order."""
    acts = acts.numpy().astype(np.float64)
    n_images, channels = acts.shape[:2]
    if acts.ndim == 4:
        width = acts.shape[3]
        flat = acts.reshape(n_images, channels, -1)
        best, where = flat.max(axis=2), flat.argmax(axis=2)
    else:
        best, where, width = acts, np.zeros(acts.shape, np.int64), 1
    values, images, positions = [], [], []
    for c in range(channels):
        order = sorted(range(n_images), key=lambda i: (-best[i, c], i))
        values.append([best[i, c] for i in order])
        images.append(order)
        positions.append([divmod(int(where[i, c]), width) if acts.ndim == 4 else (0, 0) for i in order])
    return np.array(values), np.array(images), np.array(positions)


def assert_top_is(maxes, acts):
    """The tracker's whole top N (N = the number of images) is the brute-force ranking of acts."""
    values, images, positions = ranked(acts)
    assert maxes.values.shape == values.shape
    np.testing.assert_array_equal(maxes.images, images)
    np.testing.assert_array_equal(maxes.positions, positions)
    np.testing.assert_allclose(maxes.values, values, rtol=1e-5, atol=1e-5 * np.abs(values).max())


def tokens_on_grid(tokens, grid):
    """(I, 1 + H*W, C) transformer tokens -> (I, C, H, W): the patch tokens on their grid, the class token left out."""
    patches = tokens[:, 1:]
    return patches.reshape(patches.shape[0], grid, grid, -1).permute(0, 3, 1, 2)


def png_size(path):
    with Image.open(path) as image:
        return image.size[1], image.size[0]


def assert_pages(out, layer, units, n_top, side, what, maxes):
    """Every unit folder holds info.txt (its rows the tracker's) and one image per rank of each kind, side x side."""
    for unit in units:
        folder = out / layer / f"unit_{unit:04d}"
        rows = (folder / "info.txt").read_text().splitlines()[1:]
        assert [float(r.split()[1]) for r in rows] == pytest.approx(maxes.values[unit, :n_top].tolist(), abs=2e-6)
        assert [int(r.split()[2]) for r in rows] == maxes.images[unit, :n_top].tolist()
        for prefix in what:
            for rank in range(n_top):
                assert png_size(folder / f"{prefix}_{rank:03d}.png") == (side, side), (prefix, unit, rank)


def no_value_warnings(caplog):
    return not [r for r in caplog.records if "reproduced" in r.getMessage()]


# ---------------------------------------------------------------------------------------------------- the families


def test_the_embedded_model(tmp_path, filelist, caplog, capsys):
    """EfficientNet-Lite0 (published weights), a mid block (_blocks.5, 80 channels) and fc8; ReLU6 is no ReLU: a
    deconv is refused in one line before any file, backprop works."""
    nmt, out = tmp_path / "lite.npz", tmp_path / "out"
    assert find("--N", "3", "--layers", "_blocks.5,fc8", str(IMAGES), filelist, str(nmt)) == 0
    meta, _, maxes = load_maxes(str(nmt))
    assert meta["model"] == "efficientnet_lite0" and meta["weights"] == "default" and meta["precision"] == "float32"
    model = create_model("efficientnet_lite0")
    x = torch.from_numpy(photo_crops(224).astype(np.float32).transpose(0, 3, 1, 2)
                         - np.asarray(model.input_contract.mean, np.float32)[:, None, None])
    assert_top_is(maxes["_blocks.5"], hooked(model, model._blocks[5], x))
    assert_top_is(maxes["fc8"], hooked(model, model.fc8, x))
    before = folder_state(tmp_path)
    capsys.readouterr()
    assert crop("--do-maxes", "--do-deconv", "--idx-end", "1", str(nmt), str(IMAGES), str(out), "_blocks.5") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "deconv needs ReLUs" in err and folder_state(tmp_path) == before
    with caplog.at_level(logging.WARNING):
        assert crop("--N", "2", "--do-maxes", "--do-backprop", "--do-info", "--idx-begin", "3", "--idx-end", "5",
                    str(nmt), str(IMAGES), str(out), "_blocks.5") == 0
    # stem 3x3 s2, then the depthwise convolutions of blocks 0-5: 3 s1, 3 s2, 3 s1, 5 s2, 5 s1, 3 s2: 83 pixels
    side = field_size([(3, 2), (3, 1), (3, 2), (3, 1), (5, 2), (5, 1), (3, 2)])
    assert side == 83
    assert_pages(out, "_blocks.5", (3, 4), 2, side, ("maxim", "backprop"), maxes["_blocks.5"])
    assert no_value_warnings(caplog)


def test_a_caffe_net_in_the_originals_positional_forms(tmp_path, filelist, caplog):
    """tests/data/caffe_reference's tiny net (real Caffe's caffemodel), 32 x 32 input: find_max_acts' five paths,
    crop_max_patches' seven; the original's 256 x 256 resize; conv2 (after its in-place ReLU) and fc1."""
    proto, weights = str(CAFFE / "tiny.prototxt"), str(CAFFE / "tiny.caffemodel")
    nmt, out = tmp_path / "caffe.npz", tmp_path / "out"
    assert find("--N", "3", "--layers", "conv2,fc1", proto, weights, str(IMAGES), filelist, str(nmt)) == 0
    meta, _, maxes = load_maxes(str(nmt))
    assert meta["model"] == "caffe:" + proto and meta["weights"] == weights
    net = load_caffe_model(proto, weights)
    x = caffe_inputs(32)
    with torch.no_grad():
        assert_top_is(maxes["conv2"], net(x, end="conv2").float())
        assert_top_is(maxes["fc1"], net(x, end="fc1").float())
    with caplog.at_level(logging.WARNING):
        assert crop("--do-maxes", "--do-backprop", "--do-deconv", "--do-info", "--idx-begin", "2", "--idx-end", "4",
                    str(nmt), proto, weights, str(IMAGES), filelist, str(out), "conv2") == 0
        # the four-path form takes the Caffe net and its weights from the tracker file
        assert crop("--do-maxes", "--do-info", "--idx-end", "1", str(nmt), str(IMAGES), str(tmp_path / "o4"),
                    "fc1") == 0
    side = field_size([(5, 2), (3, 2), (3, 1)])  # conv1 k5 s2, pool1 k3 s2, conv2 k3
    assert_pages(out, "conv2", (2, 3), 3, side, ("maxim", "backprop", "deconv"), maxes["conv2"])
    assert_pages(tmp_path / "o4", "fc1", (0,), 3, 32, ("maxim",), maxes["fc1"])
    assert no_value_warnings(caplog)


def test_a_torchvision_model_with_random_weights(tmp_path, filelist, caplog):
    """resnet18, --model-weights none: the weights are torch's seeded with 0 in both commands; crop_max_patches
    takes the model and its (random) weights from the tracker file."""
    import torchvision

    nmt, out = tmp_path / "resnet.npz", tmp_path / "out"
    assert find("--model", "resnet18", "--model-weights", "none", "--N", "3", "--layers", "layer2,fc8", str(IMAGES),
                filelist, str(nmt)) == 0
    meta, _, maxes = load_maxes(str(nmt))
    assert meta["model"] == "resnet18" and meta["weights"] is None
    torch.manual_seed(0)
    net = torchvision.models.resnet18().eval()
    x = normalised(224, *IMAGENET)
    assert_top_is(maxes["layer2"], hooked(net, net.layer2, x))
    assert_top_is(maxes["fc8"], hooked(net, net.fc, x))
    with caplog.at_level(logging.WARNING):
        assert crop("--N", "2", "--do-maxes", "--do-backprop", "--do-deconv", "--do-info", "--idx-begin", "5",
                    "--idx-end", "7", str(nmt), str(IMAGES), str(out), "layer2") == 0
    # conv1 7 s2, maxpool 3 s2, layer1's four 3x3 convolutions, layer2's four (the first s2): the longest path
    side = field_size([(7, 2), (3, 2)] + [(3, 1)] * 4 + [(3, 2)] + [(3, 1)] * 3)
    assert side == 99
    assert_pages(out, "layer2", (5, 6), 2, side, ("maxim", "backprop", "deconv"), maxes["layer2"])
    assert no_value_warnings(caplog)


def test_a_timm_vision_transformer_token_layer(tmp_path, filelist, caplog):
    """timm's vit_tiny_patch16_224, random weights: blocks.0's tokens read on their 14 x 14 patch grid (the class
    token left out); a unit's crop is its token's 16 x 16 patch (GELU is no ReLU: no deconv)."""
    timm = pytest.importorskip("timm")
    nmt, out = tmp_path / "vit.npz", tmp_path / "out"
    assert find("--model", "timm:vit_tiny_patch16_224", "--model-weights", "none", "--N", "3", "--layers", "blocks.0",
                str(IMAGES), filelist, str(nmt)) == 0
    meta, _, maxes = load_maxes(str(nmt))
    assert meta["layouts"]["blocks.0"].startswith("NTC") and maxes["blocks.0"].kind == "conv"
    torch.manual_seed(0)
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False).eval()
    tokens = hooked(net, net.blocks[0], normalised(224, (0.5,) * 3, (0.5,) * 3))
    assert_top_is(maxes["blocks.0"], tokens_on_grid(tokens, 14))
    with caplog.at_level(logging.WARNING):
        assert crop("--do-maxes", "--do-backprop", "--do-info", "--idx-begin", "7", "--idx-end", "9", str(nmt),
                    str(IMAGES), str(out), "blocks.0") == 0
    assert_pages(out, "blocks.0", (7, 8), 3, 16, ("maxim", "backprop"), maxes["blocks.0"])
    assert no_value_warnings(caplog)


def user_reference(layer="conv2"):
    """The user's FamNet seeded with 0 and its conv2 outputs on the photographs (ImageNet normalisation at 32 px)."""
    module = __import__(USER_MODULE)
    torch.manual_seed(0)
    net = module.build().eval()
    return net, hooked(net, getattr(net, layer), normalised(32, *IMAGENET))


def test_a_users_factory(tmp_path, filelist, user_module, caplog, capsys):
    """--model package.module:factory, from a module file on the import path; the crop needs --model again (a
    tracker file names no code that is run)."""
    spec = f"{USER_MODULE}:build"
    nmt, out = tmp_path / "user.npz", tmp_path / "out"
    assert find("--model", spec, "--N", "3", "--layers", "conv2,fc", str(IMAGES), filelist, str(nmt)) == 0
    meta, _, maxes = load_maxes(str(nmt))
    assert meta["model"] == spec
    net, acts = user_reference()
    assert_top_is(maxes["conv2"], acts)
    assert_top_is(maxes["fc"], hooked(net, net.fc, normalised(32, *IMAGENET)))
    before = folder_state(tmp_path)
    capsys.readouterr()
    assert crop("--do-maxes", str(nmt), str(IMAGES), str(out), "conv2") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and spec in err and "--model" in err and folder_state(tmp_path) == before
    with caplog.at_level(logging.WARNING):
        assert crop("--model", spec, "--do-maxes", "--do-backprop", "--do-deconv", "--do-info", "--idx-begin", "1",
                    "--idx-end", "3", str(nmt), str(IMAGES), str(out), "conv2") == 0
    assert_pages(out, "conv2", (1, 2), 3, field_size(FAMNET_FIELD), ("maxim", "backprop", "deconv"), maxes["conv2"])
    assert no_value_warnings(caplog)


def test_saved_module_files_and_the_trust_rule(tmp_path, filelist, user_module, capsys):
    """torch.save(model): a file naming the user's class loads only with --trust-model-file, in both commands (one
    line and nothing written without it); an nn.Sequential of torch.nn's layers loads without it."""
    net, acts = user_reference()
    own, plain = tmp_path / "famnet.pt", tmp_path / "sequential.pt"
    torch.save(net, own)
    torch.save(torch.nn.Sequential(net.conv1, torch.nn.ReLU(), net.pool, net.conv2), plain)
    nmt, out = tmp_path / "own.npz", tmp_path / "out"
    common = ["--N", "3", "--layers", "conv2", str(IMAGES), filelist, str(nmt)]
    before = folder_state(tmp_path)
    capsys.readouterr()
    assert find("--model", str(own), *common) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{USER_MODULE}.FamNet" in err and "--trust-model-file" in err
    assert folder_state(tmp_path) == before
    assert find("--model", str(own), "--trust-model-file", *common) == 0
    assert_top_is(load_maxes(str(nmt))[2]["conv2"], acts)
    pages = ["--do-maxes", "--do-backprop", "--do-info", "--idx-end", "1", str(nmt), str(IMAGES), str(out), "conv2"]
    before = folder_state(tmp_path)
    assert crop("--model", str(own), *pages) == 2
    assert "--trust-model-file" in capsys.readouterr().err and folder_state(tmp_path) == before
    assert crop("--model", str(own), "--trust-model-file", *pages) == 0
    assert_pages(out, "conv2", (0,), 3, field_size(FAMNET_FIELD), ("maxim", "backprop"),
                 load_maxes(str(nmt))[2]["conv2"])

    seq = tmp_path / "seq.npz"
    assert find("--model", str(plain), "--N", "3", "--layers", "3", str(IMAGES), filelist, str(seq)) == 0
    assert crop("--model", str(plain), "--do-maxes", "--idx-end", "1", str(seq), str(IMAGES), str(tmp_path / "o2"),
                "3") == 0
    assert (tmp_path / "o2" / "3" / "unit_0000" / "maxim_000.png").exists()


# ---------------------------------------------------------------------------------------------------- precision


def test_bf16_trackers_and_crops(tmp_path, filelist, user_module, caplog, monkeypatch):
    """--precision bf16: find_max_acts' values are the bfloat16 autocast forward's (not float32's); the tracker
    records bf16 and crop_max_patches runs its passes under bf16 autocast by default, reproducing the values; asked
    for float32, it says once that the precisions differ."""
    spec = f"{USER_MODULE}:build"
    nmt = tmp_path / "bf16.npz"
    assert find("--model", spec, "--precision", "bf16", "--N", "3", "--layers", "conv2", str(IMAGES), filelist,
                str(nmt)) == 0
    meta, _, maxes = load_maxes(str(nmt))
    assert meta["precision"] == "bf16"
    net, float32_acts = user_reference()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16_acts = hooked(net, net.conv2, normalised(32, *IMAGENET))
    assert_top_is(maxes["conv2"], bf16_acts)
    best = float32_acts.amax(dim=(2, 3)).T.numpy()  # (C, I)
    recorded = np.take_along_axis(best, maxes["conv2"].images, axis=1)
    assert np.abs(maxes["conv2"].values - recorded).max() > 1e-4  # bf16 did run

    autocast_seen = []
    real = unit_pages.unit_input_gradient

    def spy(*args, **kwargs):
        autocast_seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return real(*args, **kwargs)

    monkeypatch.setattr(unit_pages, "unit_input_gradient", spy)
    pages = ["--model", spec, "--do-backprop", "--do-info", "--idx-end", "3", str(nmt), str(IMAGES)]
    with caplog.at_level(logging.WARNING):
        assert crop(*pages, str(tmp_path / "o"), "conv2") == 0
    assert autocast_seen and all(autocast_seen) and no_value_warnings(caplog)
    assert not [r for r in caplog.records if "was made in" in r.getMessage()]
    autocast_seen.clear()
    with caplog.at_level(logging.WARNING):
        assert crop("--precision", "float32", *pages, str(tmp_path / "o32"), "conv2") == 0
    assert autocast_seen and not any(autocast_seen)
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "was made in bf16" in m]) == 1 and no_value_warnings(caplog)


def test_the_value_check_is_the_originals_in_float32_and_wider_in_bf16():
    assert value_tolerance(40.0, value_rtol("float32", "float32")) == pytest.approx(0.1)
    assert value_tolerance(40.0, value_rtol("bf16", "bf16")) == pytest.approx(10.1)
    assert value_rtol("bf16", "float32") == value_rtol("float32", "bf16") == value_rtol("bf16", "bf16")
    assert value_tolerance(-4.0, value_rtol("float32", "tf32")) == pytest.approx(0.3)


def test_a_wrong_value_is_warned_in_either_precision(tmp_path, filelist, user_module, caplog):
    """The value check can fail: a tracker file whose conv2 values were changed by 50 % of the unit's top value
    (beyond bf16's tolerance) is warned about."""
    spec = f"{USER_MODULE}:build"
    nmt = tmp_path / "m.npz"
    assert find("--model", spec, "--precision", "bf16", "--N", "1", "--layers", "conv2", str(IMAGES), filelist,
                str(nmt)) == 0
    with np.load(nmt) as data:
        arrays = dict(data)
    arrays["values/conv2"] = arrays["values/conv2"] * 1.5 + 0.2
    np.savez(nmt, **arrays)
    with caplog.at_level(logging.WARNING):
        assert crop("--model", spec, "--do-backprop", "--idx-end", "1", str(nmt), str(IMAGES), str(tmp_path / "o"),
                    "conv2") == 0
    assert not no_value_warnings(caplog)


# ---------------------------------------------------------------------------------------------------- a kill


KILLED_WRITER = """
import os, signal, sys
sys.path.insert(0, {root!r})
import tests.conftest  # registers tiny_test
from dvtoolbox.io import atomic
replaced, real = [], os.replace
def replace(src, dst):
    replaced.append(dst)
    if len(replaced) == {kill_at}:
        os.kill(os.getpid(), signal.SIGKILL)  # the temporary file is written, the target not yet renamed
    real(src, dst)
atomic.os.replace = replace
from dvtoolbox.cli.{command} import main
sys.exit(main(sys.argv[1:]))
"""


def killed_at(command, kill_at, argv):
    code = KILLED_WRITER.format(root=str(ROOT), kill_at=kill_at, command=command)
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]


def temps(folder):
    return sorted(p.name for p in folder.rglob(".*.tmp"))


def test_a_kill_during_a_write_leaves_no_partial_file(tmp_path, filelist):
    """SIGKILL between writing a file's temporary copy and renaming it: the target is absent (never partial), the
    files before it are whole; the next run (--brave, as files exist) removes the temporary file and writes
    everything."""
    nmt, out = tmp_path / "maxes.npz", tmp_path / "out"
    find_argv = ["--device", "cpu", "--workers", "0", "--model", "tiny_test", "--N", "3", "--layers", "conv1",
                 "--checkpoint-every", "0", str(IMAGES), filelist, str(nmt)]
    killed_at("find_max_acts", 1, find_argv)
    assert not nmt.exists() and len(temps(tmp_path)) == 1
    assert find_main(find_argv) == 0
    assert temps(tmp_path) == [] and load_maxes(str(nmt))[0]["images_done"] == 3

    crop_argv = ["--device", "cpu", "--do-maxes", "--do-info", "--idx-end", "2", str(nmt), str(IMAGES), str(out),
                 "conv1"]
    killed_at("crop_max_patches", 3, crop_argv)  # info.txt, maxim_000 whole; maxim_001 killed
    unit = out / "conv1" / "unit_0000"
    assert sorted(p.name for p in unit.iterdir() if not p.name.startswith(".")) == ["info.txt", "maxim_000.png"]
    assert len(temps(out)) == 1 and temps(out)[0].startswith(".maxim_001.png.")
    assert png_size(unit / "maxim_000.png") == (3, 3)
    before = folder_state(out)
    assert crop_main(crop_argv) == 2  # files exist: not without --brave, and the refusal changes nothing
    assert folder_state(out) == before
    assert crop_main(crop_argv + ["--brave"]) == 0
    assert temps(out) == [] and len(list(out.rglob("*.png"))) == 6
