"""The DVT loop driven by a feature-visualisation objective (optimize(..., objective=...), push.ObjectivePush)."""

import numpy as np
import pytest

from dvtoolbox.errors import UsageError
from dvtoolbox.optimize.loop import optimize
from dvtoolbox.optimize.params import FindParams
from dvtoolbox.optimize.start import initial_x
from dvtoolbox import objectives as O
from tests.conftest import TINY_MEAN, TINY_SIZE, make_tiny, tiny_weights
from tests.optimize.test_loop_reference import TABLE1_LIKE, np_forward, np_input_grad

MEAN = np.broadcast_to(np.asarray(TINY_MEAN, np.float32)[:, None, None], (3,) + TINY_SIZE).copy()


def start(p):
    return initial_x(p.start_at, p.rand_seed, MEAN)[None]


@pytest.mark.parametrize("row", ["row1", "row3", "progress01"])
def test_channel_objective_on_the_unit_gives_exactly_the_units_trace(row):
    p = FindParams(push_layer="fc8", push_channel=3, max_iter=8, rand_seed=2, **TABLE1_LIKE[row])
    (unit,) = optimize(make_tiny(), [p], start(p), MEAN, (5, 1, 1))
    (obj,) = optimize(make_tiny(), [p], start(p), MEAN, (5, 1, 1), objective=O.channel("fc8", 3))
    assert obj.obj == unit.obj  # bit for bit
    assert obj.idxmax == unit.idxmax and obj.best_ii == unit.best_ii and obj.majority_ii == unit.majority_ii
    np.testing.assert_array_equal(obj.last_xx, unit.last_xx)
    np.testing.assert_array_equal(obj.best_xx, unit.best_xx)


def test_sum_of_two_units_follows_the_numpy_gradient():
    """obj = logit 3 + 0.5 logit 1 (recorded as obj); one constant-lr step moves x by lr * (g3 + 0.5 g1)."""
    p = FindParams(push_layer="fc8", push_channel=0, max_iter=2, lr_params={"lr": 30.0})
    x0 = start(p)
    (res,) = optimize(make_tiny(), [p], x0, MEAN, (5, 1, 1), objective="fc8:3 + 0.5 * fc8:1")
    w = tiny_weights()
    x0c = np.clip(x0[0].astype(np.float64) + MEAN, 0, 255) - MEAN
    _, logits = np_forward(x0c, w)
    assert res.obj[0] == pytest.approx(logits[3] + 0.5 * logits[1], rel=1e-5, abs=1e-5)
    x1 = np.clip(x0c + 30.0 * (np_input_grad(x0c, w, 3, 1.0) + 0.5 * np_input_grad(x0c, w, 1, 1.0)) + MEAN,
                 0, 255) - MEAN
    np.testing.assert_allclose(res.last_xx, x1, rtol=1e-4, atol=1e-3)
    _, logits1 = np_forward(x1, w)
    assert res.obj[1] == pytest.approx(logits1[3] + 0.5 * logits1[1], rel=1e-4, abs=1e-4)


def test_batched_images_with_an_objective_equal_single_runs():
    batch = [FindParams(max_iter=6, push_channel=0, **TABLE1_LIKE["row1"]),
             FindParams(max_iter=6, rand_seed=9, push_channel=2, **TABLE1_LIKE["row1"])]
    x0 = np.concatenate([start(q) for q in batch])
    objective = O.channel("fc8", 4) - 0.25 * O.channel("conv1", 1)
    together = optimize(make_tiny(), batch, x0, MEAN, (5, 1, 1), objective=objective)
    for n, (q, res) in enumerate(zip(batch, together)):
        (single,) = optimize(make_tiny(), [q], x0[n:n + 1], MEAN, (5, 1, 1), objective=objective)
        np.testing.assert_allclose(res.obj, single.obj, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(res.last_xx, single.last_xx, rtol=1e-5, atol=1e-4)


def test_objective_reading_the_input_gets_rgb01():
    """L1 of the input image (RGB in [0, 1]) minus 0.5: the value is checked against numpy on x0."""
    p = FindParams(push_layer="fc8", push_channel=0, max_iter=1)
    x0 = start(p)
    (res,) = optimize(make_tiny(), [p], x0, MEAN, (5, 1, 1), objective=O.L1(constant=0.5))
    rgb = (np.clip(x0[0].astype(np.float64) + MEAN, 0, 255)) / 255.0
    assert res.obj[0] == pytest.approx(np.abs(rgb - 0.5).sum(), rel=1e-5)


def test_unknown_layer_in_the_objective_is_a_usage_error():
    p = FindParams(push_layer="fc8", push_channel=0, max_iter=1)
    with pytest.raises(UsageError, match="conv9"):
        optimize(make_tiny(), [p], start(p), MEAN, (5, 1, 1), objective="conv9:1")


# ------------------------------------------------------------------------------------------ optimize_image.py


def test_optimize_image_objective_flag(tmp_path, capsys):
    import pickle

    from dvtoolbox.cli.optimize_image import main

    base = ["--model", "tiny_test", "--max-iter", "3", "--push-channel", "3", "--lr-params", "{'lr': 30}"]
    assert main(base + ["--output-prefix", str(tmp_path / "a")], settings_dirs=[]) == 0
    assert main(base + ["--output-prefix", str(tmp_path / "b"), "--objective", "fc8:3"], settings_dirs=[]) == 0
    assert main(base + ["--output-prefix", str(tmp_path / "c"), "--objective", "fc8:3 - fc8:1"],
                settings_dirs=[]) == 0
    (_, a), (_, b), (_, c) = (pickle.loads((tmp_path / f"{p}_fc8_0003_0_info_big.pkl").read_bytes()) for p in "abc")
    assert a.obj == b.obj and a.obj != c.obj
    capsys.readouterr()
    assert main(base + ["--output-prefix", str(tmp_path / "d"), "--objective", "fc8:3 +"], settings_dirs=[]) == 2
    assert main(base + ["--output-prefix", str(tmp_path / "d"), "--objective", "fc9:3"], settings_dirs=[]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "at the end" in err[0] and "fc9" in err[1]
    assert not list(tmp_path.glob("d_*"))
