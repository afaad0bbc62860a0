"""Dictionary latents as exemplar units: find_max_acts.py and crop_max_patches.py with --dictionary on the tiny
fixed-weight model, against a numpy restatement of the latents' pre-activations; the refusals."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from dvtoolbox.cli.crop_max_patches import main as crop_main
from dvtoolbox.cli.find_max_acts import main as find_main
from dvtoolbox.exemplars.tracker import load_maxes
from dvtoolbox.io.images import load_image_rgb
from tests.cli.test_crop_max_patches_cli import expected_maxim, files_under, model_input, tracked  # noqa: F401
from tests.conftest import make_tiny
from tests.folder_state import folder_state

N_LATENTS = 6


def dictionary_file(path, seed=3):
    """A plain safetensors dictionary over conv1's 4 channels: W_enc (4, 6), b_enc (6,), ReLU."""
    g = torch.Generator().manual_seed(seed)
    w, b = torch.randn(4, N_LATENTS, generator=g), torch.randn(N_LATENTS, generator=g) * 0.1
    save_file({"W_enc": w, "b_enc": b}, str(path))
    return w.numpy().astype(np.float64), b.numpy().astype(np.float64)


def conv1_output(root, name):
    """(4, 8, 8) float64: tiny_test's conv1 output for the photograph's model input (a forward hook on conv1)."""
    model, seen = make_tiny(), []
    model.conv1.register_forward_hook(lambda module, inputs, output: seen.append(output))
    with torch.no_grad():
        model(torch.from_numpy(model_input(root, name))[None])
    return seen[0][0].double().numpy()


def brute_force_top(root, names, readable, w, b, n):
    """Per latent: the top n (value, image index, (y, x)) over the readable images, the first argmax in row-major
    order per image, ties by image order; restated in numpy."""
    per_image = []
    for index in readable:
        pre = np.einsum("chw,ck->khw", conv1_output(root, names[index]), w) + b[:, None, None]
        flat = pre.reshape(N_LATENTS, -1)
        arg = flat.argmax(1)
        per_image.append((index, flat[np.arange(N_LATENTS), arg], np.stack(np.unravel_index(arg, (8, 8)), 1)))
    tops = []
    for k in range(N_LATENTS):
        entries = sorted(((v[k], i, tuple(p[k])) for i, v, p in per_image), key=lambda e: (-e[0], e[1]))
        tops.append(entries[:n])
    return tops


def test_latents_top_n_and_crops_equal_numpy(tracked, tmp_path):
    root, names, filelist, _ = tracked
    w, b = dictionary_file(tmp_path / "sae.safetensors")
    nmt = tmp_path / "latents.npz"
    assert find_main(["--device", "cpu", "--workers", "0", "--model", "tiny_test", "--N", "3", "--dictionary",
                      f"sae=conv1={tmp_path / 'sae.safetensors'}", str(root), str(filelist), str(nmt)]) == 0
    meta, _, maxes = load_maxes(str(nmt))
    assert list(maxes) == ["sae"] and maxes["sae"].kind == "conv" and maxes["sae"].units == N_LATENTS
    assert meta["dictionaries"]["sae"]["layer"] == "conv1" and meta["dictionaries"]["sae"]["n_latents"] == N_LATENTS
    readable = [i for i, n in enumerate(names) if n != "broken.png"]
    expected = brute_force_top(root, names, readable, w, b, 3)
    m = maxes["sae"]
    for k in range(N_LATENTS):
        np.testing.assert_allclose(m.values[k], [e[0] for e in expected[k]], rtol=1e-5, atol=1e-5)
        assert m.images[k].tolist() == [e[1] for e in expected[k]]
        assert [tuple(p) for p in m.positions[k].tolist()] == [e[2] for e in expected[k]]
    out = tmp_path / "out"
    assert crop_main(["--device", "cpu", "--model", "tiny_test", "--dictionary",
                      f"sae=conv1={tmp_path / 'sae.safetensors'}", "--do-maxes", "--do-backprop", "--do-info",
                      "--idx-begin", "2", "--idx-end", "4", str(nmt), str(root), str(out), "sae"]) == 0
    assert "sae/unit_0003/backprop_002.png" in files_under(out)
    for k in (2, 3):
        for rank in range(3):
            image, (y, x) = m.images[k, rank], m.positions[k, rank]
            crop = load_image_rgb(str(out / "sae" / f"unit_{k:04d}" / f"maxim_{rank:03d}.png")) / 255.0
            want = expected_maxim(model_input(root, names[image]), y, x)  # conv1's 3x3 field
            np.testing.assert_allclose(crop, want, atol=1 / 255 + 1e-6)


def test_crop_refuses_a_missing_or_other_dictionary(tracked, tmp_path, capsys):
    root, _, filelist, _ = tracked
    dictionary_file(tmp_path / "sae.safetensors")
    dictionary_file(tmp_path / "other.safetensors", seed=4)
    nmt = tmp_path / "latents.npz"
    assert find_main(["--device", "cpu", "--workers", "0", "--model", "tiny_test", "--N", "2", "--dictionary",
                      f"sae=conv1={tmp_path / 'sae.safetensors'}", str(root), str(filelist), str(nmt)]) == 0
    before = folder_state(tmp_path)
    for extra, message in (([], "give it again, --dictionary sae=conv1=PATH"),
                           (["--dictionary", f"sae=conv1={tmp_path / 'other.safetensors'}"], "is not the one")):
        capsys.readouterr()
        assert crop_main(["--device", "cpu", "--model", "tiny_test", *extra, "--do-maxes", str(nmt), str(root),
                          str(tmp_path / "out"), "sae"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and "--dictionary" in err[0], err
        assert folder_state(tmp_path) == before


@pytest.mark.parametrize("binding, message", [
    ("sae=fc8={path}", "reads 4 channels, but layer 'fc8' has 5"),
    ("sae=nope={path}", "'nope' is not a layer"),
    ("sae=conv1", "write NAME=LAYER=PATH"),
    ("conv1=relu1={path}", "is also a layer of the model"),
])
def test_find_refuses_a_dictionary_that_does_not_fit(tracked, tmp_path, capsys, binding, message):
    root, _, filelist, _ = tracked
    dictionary_file(tmp_path / "sae.safetensors")
    before = folder_state(tmp_path)
    assert find_main(["--device", "cpu", "--workers", "0", "--model", "tiny_test", "--dictionary",
                      binding.format(path=tmp_path / "sae.safetensors"), str(root), str(filelist),
                      str(tmp_path / "m.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "--dictionary" in err[0], err
    assert folder_state(tmp_path) == before
