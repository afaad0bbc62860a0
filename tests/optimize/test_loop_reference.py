"""The whole loop on a tiny fixed-weight model against an independent float64 numpy restatement of the original
optimize/gradient_optimizer.py (forward, backward, lr policies, decay, blur, percentile clips, snapshots)."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from dvtoolbox.optimize.loop import optimize
from dvtoolbox.optimize.params import FindParams
from dvtoolbox.optimize.start import initial_x
from tests.conftest import TINY_MEAN, TINY_SIZE, make_tiny, tiny_weights


def np_forward(x, w):
    """x (3,8,8) float64 -> (pre-relu conv (4,8,8), logits (5,))."""
    xs = np.pad(x / 64.0, ((0, 0), (1, 1), (1, 1)))
    conv = np.zeros((4, 8, 8)) + w["conv1.bias"].astype(np.float64)[:, None, None]
    cw = w["conv1.weight"].astype(np.float64)
    for di in range(3):
        for dj in range(3):
            conv += np.einsum("oc,chw->ohw", cw[:, :, di, dj], xs[:, di:di + 8, dj:dj + 8])
    logits = w["fc8.weight"].astype(np.float64) @ np.maximum(conv, 0).reshape(-1) + w["fc8.bias"]
    return conv, logits


def np_input_grad(x, w, unit, push_dir):
    """d(push_dir * logits[unit]) / dx by hand."""
    conv, _ = np_forward(x, w)
    g_relu = (push_dir * w["fc8.weight"].astype(np.float64)[unit]).reshape(4, 8, 8) * (conv > 0)
    cw = w["conv1.weight"].astype(np.float64)
    gpad = np.zeros((3, 10, 10))
    for di in range(3):
        for dj in range(3):
            gpad[:, di:di + 8, dj:dj + 8] += np.einsum("oc,ohw->chw", cw[:, :, di, dj], g_relu)
    return gpad[:, 1:9, 1:9] / 64.0


def np_original_loop(p, x0, mean, w):
    """The original loop, restated in float64 numpy for the tiny net's fc8 (one image)."""
    xx = x0.astype(np.float64)[None].copy()
    rec = dict(obj=[], idxmax=[], norm=[], dist=[], std=[], best_obj=None, best_ii=None, majority_ii=None,
               meta=None)
    unit = p.push_channel
    for ii in range(p.max_iter):
        xx = np.minimum(255.0, np.maximum(0.0, xx + mean)) - mean
        _, logits = np_forward(xx[0], w)
        obj = logits[unit]
        idx = int(np.argmax(logits))
        rec["obj"].append(obj)
        rec["idxmax"].append((idx, 0, 0))
        rec["norm"].append(np.linalg.norm(xx[0]))
        rec["dist"].append(np.linalg.norm(xx[0] - x0))
        rec["std"].append(xx[0].std())
        if idx == unit and rec["majority_ii"] is None:
            rec["majority_ii"] = ii
        if rec["best_obj"] is None or obj > rec["best_obj"]:
            rec["best_obj"], rec["best_ii"], rec["best_xx"] = obj, ii, xx[0].copy()
        grad = np_input_grad(xx[0], w, unit, p.push_dir)[None]
        if np.linalg.norm(grad) == 0:
            rec["meta"] = "Metaresult: grad 0 failure"
            break
        gn2 = np.linalg.norm(grad) ** 2
        if p.lr_policy == "progress":
            lr = min(p.lr_params["max_lr"], p.lr_params["desired_prog"] / gn2)
        elif p.lr_policy == "progress01":
            desired = min(p.lr_params["early_prog"], p.lr_params["late_prog_mult"] * (1 - obj))
            lr = min(p.lr_params["max_lr"], desired / gn2)
        else:
            lr = p.lr_params["lr"]
        if ii < p.max_iter - 1:
            xx += lr * grad
            xx *= (1 - p.decay)
            if p.blur_every != 0 and p.blur_radius > 0 and ii % p.blur_every == 0:
                for c in range(3):
                    xx[0, c] = gaussian_filter(xx[0, c], p.blur_radius)
            if p.small_val_percentile > 0:
                xx = xx - xx * (abs(xx) < np.percentile(abs(xx), p.small_val_percentile))
            if p.small_norm_percentile > 0:
                pxn = np.linalg.norm(xx, axis=1)
                xx = xx - xx * np.tile((pxn < np.percentile(pxn, p.small_norm_percentile))[:, None], (1, 3, 1, 1))
            if p.px_benefit_percentile > 0:
                ben = (grad * -xx).sum(1)
                xx = xx - xx * np.tile((ben < np.percentile(ben, p.px_benefit_percentile))[:, None], (1, 3, 1, 1))
            if p.px_abs_benefit_percentile > 0:
                ben = abs((grad * -xx).sum(1))
                xx = xx - xx * np.tile((ben < np.percentile(ben, p.px_abs_benefit_percentile))[:, None],
                                       (1, 3, 1, 1))
    rec["last_xx"] = xx[0]
    return rec


TABLE1_LIKE = {
    "row1": dict(decay=0, blur_radius=0.5, blur_every=4, small_norm_percentile=50, lr_policy="progress",
                 lr_params={"max_lr": 100.0, "desired_prog": 2.0}),
    "row2": dict(decay=0.3, small_norm_percentile=20, lr_policy="constant", lr_params={"lr": 100.0}),
    "row3": dict(decay=0.0001, blur_radius=1.0, blur_every=4, lr_policy="constant", lr_params={"lr": 100.0}),
    "row4": dict(blur_radius=0.5, blur_every=4, px_abs_benefit_percentile=90, lr_policy="progress",
                 lr_params={"max_lr": 1e8, "desired_prog": 2.0}),
    "px_benefit_small_val": dict(decay=0.01, px_benefit_percentile=30, small_val_percentile=10,
                                 lr_policy="constant", lr_params={"lr": 50.0}),
    "progress01": dict(lr_policy="progress01", lr_params={"max_lr": 1e4, "early_prog": 0.5, "late_prog_mult": 0.1}),
}


@pytest.mark.parametrize("name", sorted(TABLE1_LIKE))
def test_loop_matches_float64_restatement_of_original(name):
    p = FindParams(push_layer="fc8", push_channel=2, max_iter=12, rand_seed=5, **TABLE1_LIKE[name])
    mean = np.broadcast_to(np.asarray(TINY_MEAN, np.float32)[:, None, None], (3,) + TINY_SIZE).copy()
    x0 = initial_x(p.start_at, p.rand_seed, mean)
    (res,) = optimize(make_tiny(), [p], x0[None], mean, (5, 1, 1))
    ref = np_original_loop(p, x0, mean.astype(np.float64), tiny_weights())

    assert len(res.obj) == len(ref["obj"])
    for key in ("obj", "norm", "dist", "std"):
        np.testing.assert_allclose(res.__dict__[key], ref[key], rtol=2e-4, atol=2e-4 * max(map(abs, ref[key])),
                                   err_msg=key)
    assert res.idxmax == ref["idxmax"]
    assert res.best_ii == ref["best_ii"]
    assert res.majority_ii == ref["majority_ii"]
    np.testing.assert_allclose(res.best_xx, ref["best_xx"], atol=2e-3 * np.abs(ref["best_xx"]).max())
    np.testing.assert_allclose(res.last_xx, ref["last_xx"], atol=2e-3 * np.abs(ref["last_xx"]).max())
    assert res.ii == list(range(p.max_iter))
    assert res.meta_result == ("Metaresult: majority success" if ref["majority_ii"] is not None
                               else "Metaresult: majority failure")


def test_grad_zero_stops_like_the_original():
    """All conv units dead (huge negative bias): the gradient is exactly 0, the loop records one step and stops."""
    w = tiny_weights()
    w["conv1.bias"] = np.full(4, -1e6, np.float32)
    mean = np.zeros((3,) + TINY_SIZE, np.float32)
    p = FindParams(push_channel=1, max_iter=10, lr_params={"lr": 1.0})
    (res,) = optimize(make_tiny(w), [p], initial_x("mean_plus_rand", 0, mean)[None], mean, (5, 1, 1))
    assert res.meta_result == "Metaresult: grad 0 failure"
    assert res.ii == [0]
    assert res.last_ii == 0 and res.best_ii == 0


def test_push_dir_minus_one_minimises_and_best_is_lowest():
    mean = np.broadcast_to(np.asarray(TINY_MEAN, np.float32)[:, None, None], (3,) + TINY_SIZE).copy()
    p = FindParams(push_channel=4, push_dir=-1.0, max_iter=15, lr_params={"lr": 200.0})
    x0 = initial_x(p.start_at, p.rand_seed, mean)
    (res,) = optimize(make_tiny(), [p], x0[None], mean, (5, 1, 1))
    ref = np_original_loop(p, x0, mean.astype(np.float64), tiny_weights())
    np.testing.assert_allclose(res.obj, ref["obj"], rtol=2e-4, atol=1e-4)
    assert res.obj[-1] < res.obj[0]
    assert res.best_obj == min(res.obj)
    assert res.best_ii == int(np.argmin(res.obj))


def test_batched_images_equal_single_runs():
    """Each image of a batch gets exactly the single run's trace (its own lr, thresholds, snapshots)."""
    mean = np.broadcast_to(np.asarray(TINY_MEAN, np.float32)[:, None, None], (3,) + TINY_SIZE).copy()
    base = FindParams(max_iter=10, **TABLE1_LIKE["row1"])
    batch = [base.with_unit(c) for c in (0, 2, 4)]
    x0 = np.stack([initial_x(q.start_at, q.rand_seed, mean) for q in batch])
    together = optimize(make_tiny(), batch, x0, mean, (5, 1, 1))
    for q, res in zip(batch, together):
        (single,) = optimize(make_tiny(), [q], x0[:1], mean, (5, 1, 1))
        np.testing.assert_allclose(res.obj, single.obj, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(res.last_xx, single.last_xx, rtol=1e-5, atol=1e-4)
        assert res.best_ii == single.best_ii and res.majority_ii == single.majority_ii
