"""The loop on the device: statistics copied to the host every K iterations give exactly the per-iteration
results, the snapshots decided on the device equal the host's, and one iteration reads nothing back to the host
(traced on fake tensors, as a CUDA graph needs)."""


import numpy as np
import pytest
import torch

from dvtoolbox.device import Execution
from dvtoolbox.errors import UsageError
from dvtoolbox.models.layouts import model_layouts
from dvtoolbox.optimize import loop
from dvtoolbox.optimize.loop import Iteration, optimize
from dvtoolbox.optimize.params import FindParams
from dvtoolbox.optimize.push import UnitPush
from dvtoolbox.optimize.recorder import DeviceRecord
from dvtoolbox.optimize.start import initial_x
from tests.conftest import make_tiny, tiny_weights
from tests.optimize.test_loop_reference import TABLE1_LIKE, tiny_mean

FIELDS = ("ii", "obj", "idxmax", "ismax", "norm", "dist", "std", "best_ii", "best_obj", "majority_ii",
          "majority_obj", "last_ii", "last_obj", "meta_result")
IMAGES = ("x0", "best_xx", "majority_xx", "last_xx")


def assert_same_results(a, b):
    for key in FIELDS:
        assert getattr(a, key) == getattr(b, key), key
    for key in IMAGES:
        va, vb = getattr(a, key), getattr(b, key)
        assert (va is None) == (vb is None), key
        if va is not None:
            assert va.dtype == vb.dtype and va.tobytes() == vb.tobytes(), key


def stopping_net():
    """fc8 weights >= 0 (unit 4's <= 0) and conv biases -0.6: minimising units 1 and 2 from seeds 1 and 2 at lr
    100 kills every ReLU, so their gradients become exactly 0 at iterations 12 and 27; the others run to the end."""
    w = tiny_weights()
    w["fc8.weight"] = np.abs(w["fc8.weight"])
    w["fc8.weight"][4] *= -1
    w["conv1.bias"] = np.full(4, -0.6, np.float32)
    return make_tiny(w)


def stopping_batch(iters=30):
    mean = tiny_mean()
    params = [FindParams(push_channel=c, push_dir=-1.0, max_iter=iters, rand_seed=c, lr_params={"lr": 100.0})
              for c in range(5)]
    return params, np.stack([initial_x(q.start_at, q.rand_seed, mean) for q in params]), mean


def test_the_stopping_batch_stops_mid_run():
    params, x0, mean = stopping_batch()
    results = optimize(stopping_net(), params, x0, mean, (5, 1, 1), stats_every=1)
    assert [len(r.ii) for r in results] == [30, 13, 28, 30, 30]
    assert [r.meta_result for r in results][1:3] == ["Metaresult: grad 0 failure"] * 2


@pytest.mark.parametrize("every", [3, 7, 25, 1000])
def test_statistics_every_k_iterations_equal_every_iteration(every):
    params, x0, mean = stopping_batch()
    reference = optimize(stopping_net(), params, x0, mean, (5, 1, 1), stats_every=1)
    for a, b in zip(optimize(stopping_net(), params, x0, mean, (5, 1, 1), stats_every=every), reference):
        assert_same_results(a, b)


@pytest.mark.parametrize("row", ["row1", "row4", "px_benefit_small_val"])
def test_table1_batches_every_k_equal_every_iteration(row):
    mean = tiny_mean()
    params = [FindParams(push_channel=c, rand_seed=c, max_iter=20, **TABLE1_LIKE[row]) for c in (0, 2, 4)]
    x0 = np.stack([initial_x(q.start_at, q.rand_seed, mean) for q in params])
    reference = optimize(make_tiny(), params, x0, mean, (5, 1, 1), stats_every=1)
    for a, b in zip(optimize(make_tiny(), params, x0, mean, (5, 1, 1), stats_every=6), reference):
        assert_same_results(a, b)


def test_snapshots_without_reading_back_equal_the_host_checked_copies(monkeypatch):
    """sync_free (CUDA's torch.where over every image) and the CPU's copies of changed images only."""
    params, x0, mean = stopping_batch()
    reference = optimize(stopping_net(), params, x0, mean, (5, 1, 1))

    class SyncFree(DeviceRecord):
        def __init__(self, *args, sync_free):
            super().__init__(*args, sync_free=True)

    monkeypatch.setattr(loop, "DeviceRecord", SyncFree)
    for a, b in zip(optimize(stopping_net(), params, x0, mean, (5, 1, 1)), reference):
        assert_same_results(a, b)


def test_every_image_stopped_ends_the_run_at_the_next_copy():
    w = tiny_weights()
    w["conv1.bias"] = np.full(4, -1e6, np.float32)
    mean = np.zeros((3, 8, 8))
    params = [FindParams(push_channel=c, max_iter=500, rand_seed=c, lr_params={"lr": 1.0}) for c in (1, 3)]
    x0 = np.stack([initial_x(q.start_at, q.rand_seed, mean) for q in params])
    calls = []
    model = make_tiny(w)
    layouts = model_layouts(model, (8, 8))  # the layout survey's forward pass, before the hook
    model.conv1.register_forward_hook(lambda *_: calls.append(1))
    results = optimize(model, params, x0, mean, (5, 1, 1), stats_every=10, layouts=layouts)
    assert [r.ii for r in results] == [[0], [0]] and len(calls) == 10
    assert all(r.meta_result == "Metaresult: grad 0 failure" for r in results)


def test_stats_every_must_be_a_positive_integer():
    params, x0, mean = stopping_batch(3)
    with pytest.raises(UsageError, match="stats_every must be an integer >= 1, got 0"):
        optimize(stopping_net(), params, x0, mean, (5, 1, 1), stats_every=0)


def test_graphs_engine_needs_cuda():
    params, x0, mean = stopping_batch(3)
    with pytest.raises(UsageError, match="engine graphs replays CUDA graphs: it needs device cuda, got cpu"):
        optimize(stopping_net(), params, x0, mean, (5, 1, 1), execution=Execution("graphs"))


@pytest.mark.parametrize("row", ["row1", "row3", "row4"])
def test_one_iteration_reads_nothing_back_to_the_host(row):
    """The whole iteration (crop, forward, statistics, record, lr, step, regularizers, snapshots) traced on fake
    tensors: any read back to the host (``.item()``, ``if tensor``, ``.tolist()``) would fail the trace. This is
    what a CUDA graph of the iteration needs."""
    from torch.fx.experimental.proxy_tensor import make_fx

    mean = tiny_mean()
    p = FindParams(max_iter=10, **TABLE1_LIKE[row])
    params = [p.with_unit(c) for c in (0, 3)]
    x0 = torch.as_tensor(np.stack([initial_x(q.start_at, q.rand_seed, mean) for q in params]))
    model = make_tiny().requires_grad_(False)
    push = UnitPush(model, "fc8", [q.push_unit for q in params], [1.0, 1.0], torch.device("cpu"))
    push.network.prepare(x0.float())
    record = DeviceRecord(params, x0, (5, 1, 1), 4, sync_free=True)
    iteration = Iteration(p, push, record, x0, torch.as_tensor(mean), [q.push_unit for q in params], [1.0, 1.0],
                          False)
    state = {"x": (iteration, "x"), "rows": (record, "rows"), "position": (record, "position"),
             "active": (record, "active"), "has_best": (record, "has_best"), "best_obj": (record, "best_obj"),
             "has_majority": (record, "has_majority"), "best_x": (record, "best_x"),
             "majority_x": (record, "majority_x"), "last_x": (record, "last_x")}

    def one_iteration(*tensors):
        for (owner, name), t in zip(state.values(), tensors):
            setattr(owner, name, t)
        iteration(0, last=False)  # iteration 0 blurs in rows 1, 3, 4
        return tuple(getattr(owner, name) for owner, name in state.values())

    real = [getattr(owner, name).clone() for owner, name in state.values()]
    graph = make_fx(one_iteration, tracing_mode="fake", _allow_non_fake_inputs=True)(*real)
    ops = {str(n.target) for n in graph.graph.nodes if n.op == "call_function"}
    assert "aten.convolution_backward.default" in ops and "aten.index_copy_.default" in ops
    # and the traced graph does the iteration: its outputs are the eager iteration's
    expected = one_iteration(*[t.clone() for t in real])
    for got, want in zip(graph(*[t.clone() for t in real]), expected):
        assert torch.equal(got, want)
