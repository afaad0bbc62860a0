"""DVT's post-step regularizers and lr policies inside FeatureViz.visualize (dvtoolbox/optvis/dvt.py)."""

import numpy as np
import pytest
import torch

from dvtoolbox.errors import UsageError
from dvtoolbox.optimize.loop import optimize
from dvtoolbox.optimize.params import FindParams
from dvtoolbox.optimize.start import initial_x
from dvtoolbox.optvis import FeatureViz, get_image
from dvtoolbox.optvis.dvt import LRSchedule, model_pixel_image
from dvtoolbox.regularizers.settings import Regularizers
from tests.conftest import TINY_MEAN, TINY_SIZE, make_tiny
from tests.optimize.test_loop_reference import TABLE1_LIKE
from tests.regularizers.test_operations import TABLE1, assert_close_to_ref, make_params, ref_phase6

MEAN = np.asarray(TINY_MEAN, np.float64)[:, None, None]
REG_FIELDS = ("decay", "blur_radius", "blur_every", "small_val_percentile", "small_norm_percentile",
              "px_benefit_percentile", "px_abs_benefit_percentile")


def np_crop(x):
    return np.clip(x + MEAN, 0, 255) - MEAN


@pytest.mark.parametrize("row", sorted(TABLE1))
@pytest.mark.parametrize("ii", [0, 1])
def test_after_step_is_dvt_phase6_then_the_crop(row, ii):
    rng = np.random.default_rng(7)
    x0 = rng.normal(0, 60, (2, 3) + TINY_SIZE).astype(np.float32)
    grad = rng.normal(0, 0.01, x0.shape).astype(np.float32)
    params, image_f = model_pixel_image(make_tiny().input_contract, x0=x0)
    start = np_crop(x0.astype(np.float64))
    np.testing.assert_allclose(params[0].detach().numpy(), start, rtol=1e-6, atol=1e-4)  # clipped at the start
    params[0].grad = torch.from_numpy(-grad)  # the loop minimises -objective: the ascent gradient is -x.grad
    image_f.after_step(ii, Regularizers(**TABLE1[row]))
    p = make_params(**TABLE1[row])
    x_in = params[0].detach().numpy()  # after the call; recompute the reference from the clipped start
    ref = np_crop(np.concatenate([ref_phase6(start[n:n + 1], grad[n:n + 1].astype(np.float64), ii, p)
                                  for n in range(2)]))
    assert_close_to_ref(x_in, ref)


def test_image_f_is_rgb01_of_the_pixels():
    x0 = np.zeros((1, 3) + TINY_SIZE, np.float32)
    x0[0, 0, 0, 0] = 300.0  # clipped to 255 - 120
    _, image_f = model_pixel_image(make_tiny().input_contract, x0=x0)
    image = image_f().detach().numpy()
    np.testing.assert_allclose(image[0, :, 1, 1], np.asarray(TINY_MEAN) / 255, rtol=1e-6)
    assert image[0, 0, 0, 0] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("name", ["row1", "row2", "row3", "row4", "progress01"])
def test_visualize_with_sgd_and_no_transforms_is_the_dvt_loop(name):
    """One engine: model_pixel_image + SGD + DVT lr policy + DVT regularizers, no transforms = optimize.loop."""
    row = TABLE1_LIKE[name]
    p = FindParams(push_layer="fc8", push_channel=2, max_iter=10, rand_seed=5, **row)
    mean = np.broadcast_to(np.asarray(TINY_MEAN, np.float32)[:, None, None], (3,) + TINY_SIZE).copy()
    x0 = initial_x(p.start_at, p.rand_seed, mean)
    (res,) = optimize(make_tiny(), [p], x0[None], mean, (5, 1, 1))

    model = make_tiny()
    fv = FeatureViz(model, "fc8:2")
    regs = Regularizers(**{k: v for k, v in row.items() if k in REG_FIELDS})
    images = fv.visualize(lambda: model_pixel_image(model.input_contract, x0=x0[None]), thresholds=[p.max_iter],
                          transforms=[], optimizer=lambda ps: torch.optim.SGD(ps, lr=1.0), regularizers=regs,
                          lr_schedule=LRSchedule(p.lr_policy, p.lr_params))
    np.testing.assert_allclose(fv.history, res.obj, rtol=2e-4, atol=2e-4 * max(map(abs, res.obj)))
    assert images[0].shape == (1,) + TINY_SIZE + (3,) and 0 <= images[0].min() and images[0].max() <= 1


def test_lr_schedule_values():
    grad = torch.zeros(2, 3, 2, 2)
    grad[0, 0, 0, 0], grad[1, 1, 1, 1] = 2.0, 1.0  # g2 = 4 and 1
    value = torch.tensor(0.7)
    assert LRSchedule("constant", {"lr": 3.0})([grad], value) == 3.0
    # progress: min(max_lr, desired / g2) per image, the smallest over the batch: min(8 / 4, 8 / 1) = 2
    assert LRSchedule("progress", {"max_lr": 5.0, "desired_prog": 8.0})([grad], value) == 2.0
    assert LRSchedule("progress", {"max_lr": 1.5, "desired_prog": 8.0})([grad], value) == 1.5
    # progress01: desired = min(early, mult * (1 - obj)) = min(1, 0.5 * 0.3) = 0.15; lr = 0.15 / 4
    lr = LRSchedule("progress01", {"max_lr": 10.0, "early_prog": 1.0, "late_prog_mult": 0.5})([grad], value)
    assert lr == pytest.approx(0.15 / 4, rel=1e-6)
    # several parameters: g2 sums over them per image
    # numpy's float32 norm of sqrt(8), squared in float64, as the original: 1 to float32 rounding
    assert LRSchedule("progress", {"max_lr": 50.0, "desired_prog": 8.0})([grad, grad[:, :1]], value) == \
        pytest.approx(1.0, rel=1e-7)


def test_regularizers_need_the_pixel_parameterisation_and_validate():
    fv = FeatureViz(make_tiny(), "fc8:2")
    with pytest.raises(UsageError, match="act on pixels"):
        fv.visualize(lambda: get_image(8), thresholds=[1], transforms=[], regularizers=Regularizers(decay=0.1))
    fv.visualize(lambda: get_image(8), thresholds=[1], transforms=[], regularizers=Regularizers())  # all off
    with pytest.raises(UsageError, match=r"decay must be a finite number in \[0, 1\], got 2"):
        Regularizers(decay=2.0)
    with pytest.raises(UsageError, match="small_norm_percentile must be in"):
        Regularizers(small_norm_percentile=100)
    with pytest.raises(UsageError, match="unknown lr_policy"):
        LRSchedule("cosine", {})
    with pytest.raises(UsageError, match="needs lr_params max_lr, desired_prog"):
        LRSchedule("progress", {"lr": 1.0})


def test_lr_schedule_with_adam_on_fourier_images_is_seeded_and_changes_the_lr():
    fv = FeatureViz(make_tiny(), "fc8:2")
    seen = []

    def adam(ps):
        opt = torch.optim.Adam(ps, lr=123.0)
        original = opt.step

        def step(*a, **k):
            seen.append(opt.param_groups[0]["lr"])
            return original(*a, **k)

        opt.step = step
        return opt

    a = fv.visualize(lambda: get_image(8), thresholds=[3], transforms=[], optimizer=adam,
                     lr_schedule=LRSchedule("constant", {"lr": 0.05}))
    assert seen == [0.05, 0.05, 0.05]
    b = fv.visualize(lambda: get_image(8), thresholds=[3], transforms=[], lr=0.05)
    np.testing.assert_array_equal(a[0], b[0])
