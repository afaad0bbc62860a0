"""The engines and precisions on CUDA: an iteration that never syncs with the host, CUDA graphs replaying the
compiled step's bits, compiled / folded / TF32 / bf16 against eager true float32; the lucid-style loop compiled.

Skipped where CUDA is absent (CI has none); run on a GPU machine with ``python -m pytest -q tests/gpu``
(``benchmarks/gpu_check.sh`` runs it first, under setup.cfg's warning filters).
"""

import numpy as np
import pytest
import torch

from dvtoolbox.device import Execution, configure_precision
from dvtoolbox.optimize.loop import Iteration, optimize
from dvtoolbox.optimize.params import FindParams
from dvtoolbox.optimize.push import UnitPush
from dvtoolbox.optimize.recorder import DeviceRecord
from dvtoolbox.optimize.start import initial_x
from dvtoolbox.optvis import FeatureViz, get_image
from tests.conftest import make_tiny
from tests.optimize.test_loop_device import assert_same_results, stopping_batch, stopping_net
from tests.optimize.test_loop_engines import TinyBNNet, assert_float32_rounding
from tests.optimize.test_loop_reference import TABLE1_LIKE, tiny_mean

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def _true_float32():
    configure_precision(CUDA, Execution())
    yield
    configure_precision(CUDA, Execution())


def run(model, execution=Execution("eager"), row="row1", iters=12, units=(0, 2, 4), **kwargs):
    mean = tiny_mean()
    params = [FindParams(push_channel=c, rand_seed=c, max_iter=iters, **TABLE1_LIKE[row]) for c in units]
    x0 = np.stack([initial_x(q.start_at, q.rand_seed, mean) for q in params])
    return optimize(model.to(CUDA), params, x0, mean, (5, 1, 1), execution=execution, **kwargs)


def test_one_iteration_never_syncs_with_the_host():
    """CUDA's sync debug mode raises on any implicit host sync: the whole iteration (eager step) runs without."""
    mean = tiny_mean()
    p = FindParams(max_iter=10, **TABLE1_LIKE["row1"])
    params = [p.with_unit(c) for c in (0, 3)]
    x0 = torch.as_tensor(np.stack([initial_x(q.start_at, q.rand_seed, mean) for q in params]), device=CUDA)
    push = UnitPush(make_tiny().to(CUDA).requires_grad_(False), "fc8", [q.push_unit for q in params], [1.0, 1.0],
                    CUDA)
    record = DeviceRecord(params, x0, (5, 1, 1), 8, sync_free=True)
    iteration = Iteration(p, push, record, x0, torch.as_tensor(mean, device=CUDA), [q.push_unit for q in params],
                          [1.0, 1.0], False)
    iteration(0, last=False)  # lazy initialisations (cached indices, cuDNN handles) happen here
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for ii in range(1, 6):
            iteration(ii, last=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert record.take_rows(6).shape == (6, 2, 6)


def test_cuda_graphs_replay_the_compiled_steps_bits():
    compiled = run(TinyBNNet(), Execution("compiled"), iters=20)
    graphs = run(TinyBNNet(), Execution("graphs"), iters=20)
    for a, b in zip(graphs, compiled):
        assert_same_results(a, b)


def test_compiled_and_folded_engines_agree_with_eager_to_float32_rounding():
    eager = run(TinyBNNet())
    assert_float32_rounding(run(TinyBNNet(), Execution("folded")), eager, rtol=1e-4)
    assert_float32_rounding(run(TinyBNNet(), Execution("compiled")), eager, rtol=1e-4)


def test_graphs_with_grad_zero_stops_and_statistics_every_k():
    params, x0, mean = stopping_batch()
    reference = optimize(stopping_net().to(CUDA), params, x0, mean, (5, 1, 1), execution=Execution("compiled"),
                         stats_every=1)
    for every in (4, 25):
        graphs = optimize(stopping_net().to(CUDA), params, x0, mean, (5, 1, 1), execution=Execution("graphs"),
                          stats_every=every)
        for a, b in zip(graphs, reference):
            assert_same_results(a, b)
    assert [len(r.ii) for r in reference][1:3] == [13, 28]


def test_tf32_and_bf16_stay_within_their_precision():
    reference = run(TinyBNNet(), iters=2)
    configure_precision(CUDA, Execution("eager", "tf32"))
    tf32 = run(TinyBNNet(), Execution("eager", "tf32"), iters=2)
    configure_precision(CUDA, Execution())
    bf16 = run(TinyBNNet(), Execution("graphs", "bf16"), iters=2)
    for a, b, ref in zip(tf32, bf16, reference):
        assert abs(a.obj[0] - ref.obj[0]) <= 2e-3 * abs(ref.obj[0]) + 1e-3
        assert abs(b.obj[0] - ref.obj[0]) <= 1e-2 * abs(ref.obj[0]) + 1e-2


def test_visualize_compiled_on_cuda_agrees_with_eager():
    def images(execution):
        fv = FeatureViz(make_tiny(), "fc8:3")
        return fv.visualize(lambda: get_image(8, batch=2), thresholds=[6], seed=3, device=CUDA,
                            execution=execution)[0]

    np.testing.assert_allclose(images(Execution("compiled")), images(Execution("eager")), rtol=1e-4, atol=1e-5)
