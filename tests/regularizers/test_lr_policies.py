"""Learning-rate policies: hand-computed values and the original's float64 phase 5 restated per element."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dvtoolbox.errors import UsageError
from dvtoolbox.regularizers.lr_policies import (REQUIRED_LR_KEYS, gradient_step, learning_rate, squared_grad_norm,
                                            validate_lr_params)

pytestmark = pytest.mark.filterwarnings("error")


def params(policy, **lr_params):
    return SimpleNamespace(lr_policy=policy, lr_params=lr_params)


def ref_phase5(p, grad, obj):
    """The original's phase 5 for one image in numpy: (lr, pred_prog or None). grad float32, obj np.float32:
    ``norm(grad)`` is then numpy's float32 norm, and every Python-level number is float64 (the legacy casting of
    a float32 scalar with a Python number gave float64)."""
    grad, obj = np.asarray(grad, np.float32), np.float64(obj)
    lrp = p.lr_params
    if p.lr_policy == "progress01":
        late_prog = lrp["late_prog_mult"] * (1 - obj)
        desired_prog = min(lrp["early_prog"], late_prog)
        prog_lr = desired_prog / np.float64(np.linalg.norm(grad)) ** 2
        lr = min(lrp["max_lr"], prog_lr)
        return lr, lr * np.float64(np.dot(grad.flatten(), grad.flatten()))
    if p.lr_policy == "progress":
        prog_lr = lrp["desired_prog"] / np.float64(np.linalg.norm(grad)) ** 2
        lr = min(lrp["max_lr"], prog_lr)
        return lr, lr * np.float64(np.dot(grad.flatten(), grad.flatten()))
    return lrp["lr"], None


def two_grads():
    """Element 0: all ones (|g|^2 = 12); element 1: all 0.1 (|g|^2 = 0.12). Shape (2, 3, 2, 2)."""
    return torch.stack([torch.ones(3, 2, 2), torch.full((3, 2, 2), 0.1)])


def test_constant_by_hand():
    lr, pred = learning_rate(params("constant", lr=10.0), two_grads(), torch.tensor([0.3, 0.4]))
    assert lr.tolist() == [10.0, 10.0] and lr.dtype == torch.float64
    assert pred is None


def test_progress_by_hand():
    lr, pred = learning_rate(params("progress", max_lr=1.0, desired_prog=6.0), two_grads(), torch.zeros(2))
    assert lr.tolist() == pytest.approx([0.5, 1.0], rel=1e-6)  # 6 / 12; 6 / 0.12 = 50 capped at 1
    assert pred.tolist() == pytest.approx([6.0, 0.12], rel=1e-6)


def test_progress01_by_hand():
    p = params("progress01", max_lr=0.0075, early_prog=0.1, late_prog_mult=0.1)
    lr, pred = learning_rate(p, two_grads(), torch.tensor([0.2, 0.99]))
    # element 0: desired = min(.1, .1 * .8) = .08, .08 / 12 = .00667; element 1: .001 / .12 = .00833 -> capped
    assert lr.tolist() == pytest.approx([0.08 / 12, 0.0075], rel=1e-6)
    assert pred.tolist() == pytest.approx([0.08, 0.0075 * 0.12], rel=1e-6)


def test_progress01_early_prog_caps_desired_progress():
    p = params("progress01", max_lr=1e9, early_prog=0.05, late_prog_mult=0.1)
    lr, pred = learning_rate(p, two_grads(), torch.tensor([0.0, 0.0]))  # late = .1 > early = .05
    assert pred.tolist() == pytest.approx([0.05, 0.05], rel=1e-6)
    assert lr.tolist() == pytest.approx([0.05 / 12, 0.05 / 0.12], rel=1e-6)


POLICIES = [
    params("constant", lr=3.5),
    params("progress", max_lr=1e4, desired_prog=2.0),
    params("progress", max_lr=0.5, desired_prog=2.0),
    params("progress01", max_lr=1e5, early_prog=0.02, late_prog_mult=0.1),
    params("progress01", max_lr=30.0, early_prog=0.02, late_prog_mult=0.1),
]


@pytest.mark.parametrize("p", POLICIES, ids=lambda p: f"{p.lr_policy}-{sorted(p.lr_params.values())}")
def test_matches_original_per_element(p):
    rng = np.random.default_rng(3)
    grad = (rng.normal(size=(4, 3, 9, 7)) * np.array([1e-3, 1e-2, 1.0, 30.0])[:, None, None, None]).astype(np.float32)
    obj = np.array([0.001, 0.5, 0.95, 0.999], np.float32)
    lr, pred = learning_rate(p, torch.from_numpy(grad), torch.from_numpy(obj))
    assert lr.dtype == torch.float64
    for n in range(4):
        ref_lr, ref_pred = ref_phase5(p, grad[n], obj[n])
        # the float32 norm differs from BLAS's sdot by float32 rounding only: 2 ulps of float32 in norm**2
        assert lr[n].item() == pytest.approx(ref_lr, rel=3e-7, abs=0)
        if ref_pred is None:
            assert pred is None
        else:
            assert pred[n].item() == pytest.approx(ref_pred, rel=3e-7, abs=0)


def test_gradient_step_is_numpys_float32_product_widened():
    """numpy's ``xx += lr * grad``: the Python-float rate times a float32 array is a float32 product (rate rounded
    to float32), widened into the float64 image."""
    rng = np.random.default_rng(0)
    grad = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    lr = np.array([100.0 / 3.0, 0.1])
    step = gradient_step(torch.from_numpy(lr), torch.from_numpy(grad), torch.float64)
    assert step.dtype == torch.float64
    for n in range(2):
        expected = (np.float32(lr[n]) * grad[n]).astype(np.float64)  # what legacy numpy computed
        np.testing.assert_array_equal(step[n].numpy(), expected)
    assert not np.array_equal(step[0].numpy(), lr[0] * grad[0].astype(np.float64))  # the rounding is real


def test_squared_grad_norm_is_numpys_float32_norm_squared_in_float64():
    grad = torch.full((1, 3, 2, 2), 0.1)  # dot = 12 * 0.1f^2
    g = np.float32(np.sqrt(np.float32(12 * np.float64(np.float32(0.1)) ** 2)))
    assert squared_grad_norm(grad).dtype == torch.float64
    assert squared_grad_norm(grad).item() == np.float64(g) ** 2


@pytest.mark.parametrize("policy", ["progress", "progress01"])
def test_zero_gradient_gets_max_lr(policy):
    grad = two_grads()
    grad[1] = 0
    p = params(policy, max_lr=2.0, desired_prog=1.0, early_prog=0.1, late_prog_mult=0.1)
    lr, pred = learning_rate(p, grad, torch.tensor([0.5, 0.5]))
    assert lr[1].item() == 2.0 and pred[1].item() == 0.0
    assert torch.isfinite(lr).all() and torch.isfinite(pred).all()


def test_element_rates_are_independent():
    p = params("progress", max_lr=1e9, desired_prog=1.0)
    grad = two_grads()
    lr, _ = learning_rate(p, grad, torch.zeros(2))
    grad[0] *= 100
    lr2, _ = learning_rate(p, grad, torch.zeros(2))
    assert lr2[1].item() == lr[1].item() and lr2[0].item() != lr[0].item()


def test_required_keys_are_the_originals():
    assert REQUIRED_LR_KEYS == {
        "constant": ("lr",),
        "progress": ("max_lr", "desired_prog"),
        "progress01": ("max_lr", "early_prog", "late_prog_mult"),
    }


@pytest.mark.parametrize("policy, lr_params", [
    ("constant", {"lr": 10}),
    ("constant", {"lr": np.float32(2.5), "extra": "ignored"}),
    ("progress", {"max_lr": 1e9, "desired_prog": 2}),
    ("progress01", {"max_lr": 1e9, "early_prog": 0.1, "late_prog_mult": np.int64(1)}),
])
def test_validate_accepts(policy, lr_params):
    validate_lr_params(policy, lr_params)


@pytest.mark.parametrize("policy, lr_params, words", [
    ("adam", {"lr": 1.0}, ["'adam'", "constant", "progress", "progress01"]),
    ("progress", {"max_lr": 1.0}, ["'progress'", "missing: desired_prog"]),
    ("progress01", {"lr": 1.0}, ["'progress01'", "missing: max_lr, early_prog, late_prog_mult"]),
    ("constant", {"lr": True}, ["lr=True", "real numbers"]),
    ("constant", {"lr": "10"}, ["lr='10'", "real numbers"]),
    ("constant", None, ["lr_params must be a dict"]),
    ("constant", {"lr": float("inf")}, ["lr=inf", "finite and > 0"]),
    ("constant", {"lr": float("nan")}, ["lr=nan", "finite and > 0"]),
    ("constant", {"lr": 0}, ["lr=0", "finite and > 0"]),
    ("progress", {"max_lr": -1.0, "desired_prog": 2.0}, ["max_lr=-1.0", "finite and > 0"]),
    ("progress", {"max_lr": 1.0, "desired_prog": 0.0}, ["desired_prog=0.0", "finite and > 0"]),
    ("progress01", {"max_lr": 1.0, "early_prog": 1e400, "late_prog_mult": 0.1}, ["early_prog=inf"]),
    ("progress01", {"max_lr": 1.0, "early_prog": 0.1, "late_prog_mult": -0.1}, ["late_prog_mult=-0.1"]),
])
def test_validate_rejects_with_one_line(policy, lr_params, words):
    with pytest.raises(UsageError) as info:
        validate_lr_params(policy, lr_params)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_learning_rate_validates():
    with pytest.raises(UsageError, match="missing: lr"):
        learning_rate(params("constant", max_lr=1.0), two_grads(), torch.zeros(2))
