"""The models people study, by name, with random weights: torchvision's vit_b_16, convnext_tiny and resnet50 and timm's
ViT. Each objective kind on a hidden layer of each (values and input gradients finite, channels read through the
layer's layout), and one optimisation step through each command line. Real weights come from the user's torch / timm
cache (doc/models.md); these tests never download."""

import pickle

import numpy as np
import pytest
import torch

from dvtoolbox import objectives as O
from dvtoolbox.cli.optimize_image import main as optimize_main
from dvtoolbox.cli.visualize import main as visualize_main
from dvtoolbox.models.capture import LayerCapture
from dvtoolbox.models.layouts import model_layouts
from dvtoolbox.models.pixel_space import to_model_input
from dvtoolbox.models.registry import create_model
from dvtoolbox.objectives import Activations

# name -> (input side for the tests, a hidden layer, its layout, a second layer, a unit for the DVT push)
ZOO = {
    "vit_b_16": (224, "encoder.layers.encoder_layer_5", "NTC (prefix 1, grid 14x14)",
                 "encoder.layers.encoder_layer_5.mlp", (100, 7, 7)),
    "convnext_tiny": (64, "features.5.1", "NCHW", "features.5.1.block.3", (7, 1, 1)),
    "resnet50": (64, "layer3", "NCHW", "layer3.2.conv2", (11, 2, 2)),
    "timm:vit_tiny_patch16_224": (224, "blocks.5", "NTC (prefix 1, grid 14x14)", "blocks.5.attn", (17, 3, 4)),
}


@pytest.fixture(scope="module", params=sorted(ZOO))
def zoo_model(request):
    if request.param.startswith("timm:"):
        pytest.importorskip("timm")
    torch.manual_seed(0)
    model = create_model(request.param, weights=None)
    return request.param, model


def test_every_objective_kind_on_a_hidden_layer(zoo_model):
    name, model = zoo_model
    side, layer, layout, second, _ = ZOO[name]
    layouts = model_layouts(model, (side, side))
    assert str(layouts[layer]) == layout
    image = torch.from_numpy(np.random.RandomState(0).uniform(0, 1, (3, 3, side, side)).astype(np.float32))
    image.requires_grad_(True)
    with LayerCapture(model, [layer, second]) as capture:
        model(to_model_input(image, model.input_contract))
    acts = Activations({**capture.outputs, "input": image}, layouts=layouts)
    channels = acts.channels_first(layer, acts[layer]).shape[1]
    kinds = [O.neuron(layer, 3), O.channel(layer, 3), O.direction(layer, torch.ones(channels)), O.layer(layer),
             O.diversity(layer), O.alignment(layer), O.channel_interpolate(layer, 1, second, 2)]
    if layout.startswith("NTC"):
        kinds += [O.neuron(layer, 3, token=0), O.channel(layer, 3, include_prefix=True)]
    values = [kind(acts) for kind in kinds]
    assert all(v.dim() == 0 and torch.isfinite(v) for v in values), [str(k) for k in kinds]
    (grad,) = torch.autograd.grad(sum(values), image)
    assert grad.shape == image.shape and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_one_step_through_optimize_image(zoo_model, tmp_path):
    name, _ = zoo_model
    side, layer, _, _, (channel, y, x) = ZOO[name]
    assert optimize_main(["--model", name, "--model-weights", "none", "--data-size", f"({side},{side})",
                          "--push-layer", layer, "--push-channel", str(channel), "--push-spatial", f"({y},{x})",
                          "--max-iter", "2", "--output-prefix", str(tmp_path / "o")], settings_dirs=[]) == 0
    (big,) = tmp_path.glob("o_*_info_big.pkl")
    with open(big, "rb") as handle:
        params, results = pickle.load(handle)
    assert params.push_unit == (channel, y, x) and len(results.obj) == 2
    assert np.isfinite(results.obj).all() and np.isfinite(results.last_xx).all()
    assert all(len(i) == 3 for i in results.idxmax)   # (channel, y, x) on the grid, as on a conv layer


def test_one_step_through_visualize(zoo_model, tmp_path):
    name, _ = zoo_model
    side, layer, _, second, _ = ZOO[name]
    size = ["--size", str(side), "--no-resize"] if side != 224 else []
    assert visualize_main(["--model", name, "--model-weights", "none", "--objective", f"{layer}:3 - 0.5 * {second}:1",
                           "--steps", "1", "--transforms", "none", *size,
                           "--output-dir", str(tmp_path)]) == 0
    assert (tmp_path / "viz_step1_0.png").is_file()
    assert "objective at step 1: " in (tmp_path / "viz_info.txt").read_text()
