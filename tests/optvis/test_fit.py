"""How a transformed image reaches a fixed-size model: centre crop / grey pad by default, bilinear resize
on request; numpy references."""

import numpy as np
import pytest
import torch

from dvtoolbox.errors import UsageError
from dvtoolbox.optvis import FeatureViz
from dvtoolbox.optvis.param.spatial import resize_bilinear
from dvtoolbox.optvis.transforms import crop_or_pad


@pytest.mark.parametrize("shape, size", [((11, 12), (8, 8)), ((5, 6), (8, 9)), ((11, 5), (8, 8)), ((8, 8), (8, 8))])
def test_crop_or_pad_against_numpy(shape, size):
    x = np.random.RandomState(0).rand(2, 3, *shape)
    out = crop_or_pad(torch.tensor(x), size, value=0.5).numpy()
    ref = x
    for axis, (n, want) in enumerate(zip(shape, size), start=2):
        if n >= want:
            start = (n - want) // 2
            ref = np.take(ref, np.arange(start, start + want), axis=axis)
        else:
            pad = [(0, 0)] * 4
            pad[axis] = ((want - n) // 2, want - n - (want - n) // 2)
            ref = np.pad(ref, pad, constant_values=0.5)
    np.testing.assert_array_equal(out, ref)


def test_fit_modes_in_the_loop(tiny_model):
    """A 10x10 image on the 8x8 model with no transform: fit="crop" feeds its centre, fit="resize" the resized
    image; the objective at step 1 is the model's value on each."""
    from dvtoolbox.models.pixel_space import to_model_input

    x = torch.rand(1, 3, 10, 10)
    values = {}
    for fit in ("crop", "resize"):
        fv = FeatureViz(tiny_model, "fc8:2", fit=fit)
        fv.visualize(lambda: ([x.clone().requires_grad_(True)], lambda: x), thresholds=[1], transforms=[], lr=0.0)
        values[fit] = fv.history[0]
    with torch.no_grad():
        crop = tiny_model(to_model_input(x[..., 1:9, 1:9], tiny_model.input_contract))[0, 2].item()
        resized = tiny_model(to_model_input(resize_bilinear(x, (8, 8)), tiny_model.input_contract))[0, 2].item()
    assert values["crop"] == pytest.approx(crop, rel=1e-6) and values["resize"] == pytest.approx(resized, rel=1e-6)
    assert crop != pytest.approx(resized, rel=1e-3)
    with pytest.raises(UsageError, match="fit must be one of crop, resize"):
        FeatureViz(tiny_model, "fc8:2", fit="stretch")
