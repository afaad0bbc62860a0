"""torchvision classifiers by name: weights from a local file, dvtoolbox's pixel space, names, errors."""

import logging
import os
import urllib.error

import numpy as np
import pytest
import torch
import torchvision

from dvtoolbox.errors import UsageError
from dvtoolbox.models.adapter import PixelSpaceModel
from dvtoolbox.models.capture import LayerCapture, named_layers
from dvtoolbox.models.registry import create_model
from dvtoolbox.models.pixel_space import to_model_input

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    torch.manual_seed(5)
    net = torchvision.models.resnet18(weights=None)
    path = tmp_path_factory.mktemp("tv") / "resnet18-random.pth"
    torch.save(net.state_dict(), path)
    return path, net.eval()


def test_local_weights_and_pixel_space(resnet18_file):
    path, reference = resnet18_file
    model = create_model("torchvision:resnet18", weights=str(path))
    assert not model.training
    contract = model.input_contract
    assert contract.size == (224, 224) and contract.channel_order == "RGB"
    np.testing.assert_allclose(contract.mean, 255.0 * MEAN, rtol=1e-6)
    assert len(contract.labels) == 1000 and contract.labels[0] == "tench" and contract.label_layers == ("fc8", "prob")
    # The same image through torchvision's own normalisation and through dvtoolbox's pixel space.
    image = torch.rand((2, 3, 64, 64), generator=torch.Generator().manual_seed(2))
    want_input = (image.numpy() - MEAN[:, None, None]) / STD[:, None, None]
    with torch.no_grad():
        want = reference(torch.from_numpy(want_input))
        got = model(to_model_input(image, contract))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_torchvision_layer_names_are_torchvisions_own(resnet18_file):
    path, _ = resnet18_file
    model = create_model("torchvision:resnet18", weights=str(path))
    names = list(named_layers(model))
    assert {"layer4", "layer4.1.conv2", "fc", "fc8", "prob"} <= set(names)
    assert names.index("fc") < names.index("fc8") and not any(n.startswith("net") for n in names)
    with LayerCapture(model, ["layer4", "fc8", "prob"]) as capture, torch.no_grad():
        model(torch.zeros(1, 3, 64, 64))
    assert capture.outputs["layer4"].shape == (1, 512, 2, 2)
    torch.testing.assert_close(capture.outputs["prob"].sum(), torch.tensor(1.0))
    with pytest.raises(UsageError, match="valid layers: conv1, bn1, .*layer4"):
        LayerCapture(model, ["net.layer4"])


def test_random_weights_only_when_asked(caplog):
    with caplog.at_level(logging.WARNING, logger="dvtoolbox.models.torchvision_models"):
        model = create_model("torchvision:resnet18", weights=None)
    assert "random weights" in caplog.text
    assert isinstance(model, PixelSpaceModel)


def test_default_weights_offline_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # the user's torch cache: <TORCH_HOME>/hub/checkpoints

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(UsageError) as info:
        create_model("torchvision:resnet18")
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message and str(tmp_path) in message and "\n" not in message


def test_default_weights_from_the_cache_with_hash_prefix(resnet18_file, tmp_path, monkeypatch):
    # A file in the user's torch cache under torchvision's name (as torchvision itself keeps it) is used without any
    # download.
    path, reference = resnet18_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    os.link(path, tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("downloaded"))
    model = create_model("torchvision:resnet18")
    assert torch.equal(model.net.fc.weight, reference.fc.weight)


def test_errors(resnet18_file, tmp_path):
    with pytest.raises(UsageError, match="unknown torchvision model 'resnet19'.*torchvision:resnet18"):
        create_model("torchvision:resnet19", weights=None)
    path, _ = resnet18_file
    with pytest.raises(UsageError, match="does not fit torchvision:resnet34"):
        create_model("torchvision:resnet34", weights=str(path))
    with pytest.raises(UsageError, match="model 'resnet9000' is unknown; did you mean .*resnet50.*families: .*"
                                         "torchvision:<architecture>"):
        create_model("resnet9000")
    assert isinstance(create_model("resnet18", weights=str(path)).net, torchvision.models.ResNet)  # a bare name
