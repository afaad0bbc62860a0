"""MACO and feature accentuation on CUDA: the same images as on the CPU to float32 rounding, the fixed
amplitude on the device, seeds reproduce. Skipped where CUDA is absent; ``python -m pytest -q tests/gpu``."""

import numpy as np
import pytest
import torch

from dvtoolbox.models.registry import create_model
from dvtoolbox.device import configure_float32
from dvtoolbox.optvis import FeatureViz
from dvtoolbox.optvis.accentuate import accentuate
from dvtoolbox.optvis.param.maco import maco_image

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(autouse=True)
def _true_float32():
    configure_float32(torch.device("cuda"), allow_tf32=False)


def test_maco_phase_draw_and_image_on_cuda_match_the_cpu_formula():
    gen = torch.Generator(device="cuda").manual_seed(0)
    params, image_f = maco_image(16, 12, batch=2, generator=gen, device="cuda")
    assert params[0].device.type == "cuda" and image_f.amplitude.device.type == "cuda"
    z = image_f.decorrelated().detach().cpu().numpy().astype(np.float64)
    measured = np.abs(np.fft.rfft2(z, norm="ortho"))
    expected = np.broadcast_to(image_f.amplitude.cpu().numpy(), measured.shape).copy()
    assert params[1].device.type == "cuda"                       # the free mean colour, |m| sqrt(H W) at DC
    expected[:, :, 0, 0] = np.abs(image_f.mean_colour().detach().cpu().numpy()) * np.sqrt(12 * 16)
    np.testing.assert_allclose(measured, expected, atol=2e-6 * expected.max())


def test_maco_recipe_on_cuda_reproduces_and_keeps_the_amplitude():
    model = create_model("tiny_test")

    def run():
        holder = {}

        def param_f():
            params, holder["f"] = maco_image(8, batch=2)
            return params, holder["f"]

        fv = FeatureViz(model, "fc8:2")
        from dvtoolbox.optvis.transforms import maco_transforms
        images = fv.visualize(param_f, thresholds=[5], lr=0.2, transforms=maco_transforms(), views=4, seed=1,
                              device="cuda")
        return images[0], holder["f"]

    a, f = run()
    b, _ = run()
    np.testing.assert_allclose(a, b, atol=1e-5)  # grid_sample's backward accumulates with atomics on CUDA
    assert f.transparency.device.type == "cuda" and float(f.transparency.sum()) > 0


def test_accentuation_with_zero_push_returns_the_start_on_cuda():
    model = create_model("tiny_test")
    start = np.random.RandomState(0).rand(8, 8, 3)
    from dvtoolbox.objectives import channel

    result = accentuate(model, 0 * channel("fc8", 2), start, layer="conv1", thresholds=[4], views=2, device="cuda")
    np.testing.assert_array_equal(result.images[0], result.start)
