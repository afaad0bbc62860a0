"""The DVT optimizer loop: regularised gradient ascent in pixel space, over a batch of images on one device.

Each image n pushes its own unit with its own FindParams; all share one schedule (FindParams.schedule_key). Image
n's result is what a run of that image alone gives: its own learning rate, percentile thresholds, snapshots and
grad-0 stop. Phases are numbered as the original numbers them (optimize/gradient_optimizer.py).

x: (N, 3, H, W) on the model's device, the image minus the mean on the 0..255 scale, model channel order. Its
precision is the original's: the image state (x0, x, the step, decay, blur, the four clips, the snapshots) is
float64, as numpy held it, and the network sees float32(x) and gives a float32 gradient, as Caffe's blobs did.
``state_dtype=torch.float32`` is the explicit faster mode (see doc/running-optimize-image.md for its cost).
"""

from __future__ import annotations

import functools
import logging
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from dvtoolbox.device import Execution
from dvtoolbox.errors import UsageError
from dvtoolbox.models.layouts import Layout, model_layouts
from dvtoolbox.models.program_cache import ProgramCache
from dvtoolbox.regularizers.lr_policies import gradient_step, learning_rate
from dvtoolbox.optimize.params import FindParams
from dvtoolbox.optimize.push import EAGER, ObjectivePush, UnitPush
from dvtoolbox.optimize.recorder import DeviceRecord, Recorder, batch_statistics
from dvtoolbox.models.pixel_space import crop_to_valid_range
from dvtoolbox.regularizers.operations import blur_due, regularize
from dvtoolbox.optimize.results import FindResults

log = logging.getLogger(__name__)


STATS_EVERY = 25  # iterations between copies of the statistics to the host (and progress-bar updates)
GRAPH_WARMUP = 2  # eager iterations of each kind (with / without blur) before that kind is captured as a CUDA graph


def optimize(model: nn.Module, params: Sequence[FindParams], x0: np.ndarray, mean: np.ndarray,
             layer_shape3d, progress: bool = False, labels: Optional[Sequence[str]] = None,
             label_layers: Sequence[str] = (), objective=None,
             state_dtype: torch.dtype = torch.float64, execution: Execution = EAGER,
             stats_every: int = STATS_EVERY, layouts: Optional[Dict[str, Layout]] = None,
             programs: Optional[ProgramCache] = None) -> List[FindResults]:
    """Run the loop; returns one FindResults per image.

    model: in eval mode, float32, on the device to use. x0: (N, 3, H, W) start images; mean: (3, H, W), both
    0..255 scale in the model's channel order (float64 keeps their bits). layer_shape3d: (C, H, W) of the push
    layer ((C, 1, 1) for FC; the units of a token layer are its patch grid). state_dtype: the image state's dtype,
    float64 (the original's) or float32. layouts: where each layer's channels are (``models.layouts``); default
    inferred from the model (one probe forward pass).
    labels, label_layers: class names printed in -v lines when the push layer is one of label_layers.
    objective: None (push each image's unit) or an optvis Objective / expression string (``ObjectivePush``):
    its gradient replaces the unit's, each image's value is recorded as obj; the push unit is still used for
    idxmax / ismax / majority.
    execution: how the network step runs (``dvtoolbox.device.Execution``: engine and precision; default eager,
    true float32). stats_every: iterations between copies of the recorded statistics to the host (the results
    are the same for any value); with -v logging every iteration is copied and logged, and no CUDA graph is used.
    programs: the caller's ``ProgramCache`` for this model, where the network step (a folded copy, a compiled
    program) is kept for the next call, e.g. the next batch of a layer; default: made for this call and freed with it.
    """
    p = _shared_schedule(params)
    _warn_small_blur(_blur_radius_if_used(p))
    device = next(iter(model.parameters()), torch.empty(0)).device
    if state_dtype not in (torch.float64, torch.float32):
        raise ValueError(f"state_dtype must be torch.float64 or torch.float32, got {state_dtype}")
    if isinstance(stats_every, bool) or not isinstance(stats_every, int) or stats_every < 1:
        raise UsageError(f"stats_every must be an integer >= 1, got {stats_every!r}", "stats_every")
    execution = execution.on(device)
    verbose = log.isEnabledFor(logging.INFO)
    every = 1 if verbose else min(stats_every, p.max_iter)
    x0_t = torch.as_tensor(x0, device=device).to(state_dtype).clone()
    dirs = [q.push_dir for q in params]
    if layouts is None:
        layouts = model_layouts(model, tuple(x0_t.shape[-2:]))
    programs = ProgramCache() if programs is None else programs
    push = UnitPush(model, p.push_layer, [q.push_unit for q in params], dirs, device, execution, layouts, programs) \
        if objective is None else ObjectivePush(model, p.push_layer, objective, dirs, device, execution, layouts,
                                                programs)
    record = DeviceRecord(params, x0_t, layer_shape3d, every, sync_free=device.type == "cuda")
    iteration = Iteration(p, push, record, x0_t, torch.as_tensor(mean, device=device).to(state_dtype),
                          [q.push_unit for q in params], [np.sign(d) for d in dirs], objective is not None)
    step = CUDAGraphIterations(iteration) if execution.cuda_graphs and not verbose else iteration
    recorder = Recorder(params, x0_t, layer_shape3d)
    bar = tqdm(range(p.max_iter), disable=not progress, desc=f"{p.push_layer} {_unit_label(params)}", leave=True)
    first, old_obj = 0, None
    for ii in bar:
        details = step(ii, last=ii == p.max_iter - 1)                               # 0. to 6.
        if ii + 1 - first < every and ii < p.max_iter - 1:
            continue
        rows = record.take_rows(ii + 1 - first)                                     # 2. record, on the host
        for k, stats in enumerate(rows):
            was_active = list(recorder.active)
            recorder.update(first + k, stats)
            if verbose:                                                             # 3. progress
                _report(ii, params, recorder, was_active, details, stats.tolist(), old_obj,
                        labels if p.push_layer in label_layers else None)
                old_obj = [row[0] for row in stats.tolist()]
        _show(bar, params, recorder, rows[-1])
        first = ii + 1
        if not any(recorder.active):                                                # 4. every image stopped
            break
    bar.close()
    return recorder.finish(record)


class Iteration:
    """One iteration of the loop on the device, phases numbered as the original numbers them; nothing is read
    back to the host, so it can run as a CUDA graph. The image state ``x`` is updated in place."""

    def __init__(self, p: FindParams, push, record: DeviceRecord, x0: torch.Tensor, mean: torch.Tensor,
                 units: Sequence[Tuple[int, int, int]], signs: Sequence[float], objective: bool):
        self.p, self.push, self.record, self.objective = p, push, record, objective
        self.x, self.x0, self.mean = x0.clone(), x0, mean
        self.units = torch.as_tensor(units, dtype=torch.long, device=x0.device)
        self.signs = torch.as_tensor(signs, dtype=torch.float32, device=x0.device)
        self.any_negative = any(s < 0 for s in signs)

    def __call__(self, ii: int, last: bool):
        """Iteration ii (``last``: no step, as the original); returns what -v logging reads."""
        x = crop_to_valid_range(self.x, self.mean)                                  # 0. crop to [0, 255]
        acts, grad = self.push(x.to(torch.float32))                                 # 1. forward (4. backward)
        stats = batch_statistics(acts, x, self.x0, grad, self.units, self.signs, self.any_negative)
        if self.objective:                                                          #    obj: the objective's
            stats[:, 0] = self.push.values
        self.record.record(stats, x)                                                # 2. record (4. grad 0)
        lr, pred_prog = learning_rate(self.p, grad, stats[:, 0])                    # 5. learning rate
        if not last:                                                                # 6. step, regularize
            stepped = regularize(x + gradient_step(lr, grad, x.dtype), grad, ii, self.p)
            torch.where(self.record.active.view(-1, 1, 1, 1), stepped, x, out=self.x)
        return acts, x, grad, pred_prog


class CUDAGraphIterations:
    """An ``Iteration`` replayed as CUDA graphs: one graph per kind of iteration (with and without the blur),
    captured after ``GRAPH_WARMUP`` eager iterations of that kind on a side stream (compilation, cuDNN and cached
    indices happen then); the last iteration (no step) runs eagerly. Every tensor the graphs read or write lives
    in the iteration, the push or the record, so each replay is one more iteration."""

    def __init__(self, iteration: Iteration):
        self.iteration = iteration
        self.graphs = {}
        self.warm = {}
        self.stream = torch.cuda.Stream(device=iteration.x.device)

    def __call__(self, ii: int, last: bool):
        if last:
            return self.iteration(ii, last)
        p = self.iteration.p
        kind = blur_due(ii, p.blur_radius, p.blur_every)
        graph = self.graphs.get(kind)
        if graph is None and self.warm.get(kind, 0) < GRAPH_WARMUP:
            self.warm[kind] = self.warm.get(kind, 0) + 1
            self.stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.stream):
                self.iteration(ii, last)
            torch.cuda.current_stream().wait_stream(self.stream)
            return None
        if graph is None:
            graph = self.graphs[kind] = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):  # recorded, not run
                self.iteration(ii, last)
            log.info("captured the %s iteration as a CUDA graph", "blur" if kind else "plain")
        graph.replay()
        return None


def _shared_schedule(params: Sequence[FindParams]) -> FindParams:
    if not params:
        raise UsageError("nothing to optimize: the list of units is empty")
    keys = {q.schedule_key() for q in params}
    if len(keys) != 1:
        raise UsageError("a batch must share every setting except push_channel, push_spatial, rand_seed, start_at")
    return params[0]


def _blur_radius_if_used(p: FindParams) -> float:
    return float(p.blur_radius) if p.blur_every != 0 and p.blur_radius > 0 else 0.0


@functools.lru_cache(maxsize=None)
def _warn_small_blur(radius: float) -> None:
    """The original's warning for a blur radius under 0.3, once per process and radius (it printed it every step)."""
    if 0 < radius < 0.3:
        log.warning("Warning: blur-radius of .3 or less works very poorly (blur_radius %g)", radius)


def _unit_label(params: Sequence[FindParams]) -> str:
    if len(params) == 1:
        return "unit %s" % (params[0].push_unit,)
    return f"{len(params)} units"


def _show(bar, params, recorder: Recorder, stats) -> None:
    """tqdm postfix: obj and best so far (the means over a batch)."""
    if bar.disable:
        return
    if len(params) == 1:
        bar.set_postfix_str(f"obj={stats[0][0]:.4g} best={recorder.results[0].best_obj:.4g}", refresh=False)
    else:
        best = [r.best_obj for r in recorder.results if r.best_obj is not None]
        bar.set_postfix_str(f"mean obj={np.mean([s[0] for s in stats]):.4g} mean best={np.mean(best):.4g}",
                            refresh=False)


def _report(ii, params, recorder, was_active, details, stats, old_obj, labels) -> None:
    """With -v (every iteration copied to the host): the original's per-iteration lines through logging."""
    acts, x, grad, pred_prog = details
    for n, p in enumerate(params):
        if not was_active[n]:
            continue
        tag = f"[{n}] " if len(params) > 1 else ""
        obj, res = stats[n][0], recorder.results[n]
        if ii == 0:
            log.info("%s%d", tag, ii)
        elif p.lr_policy in ("progress", "progress01") and pred_prog is not None:
            log.info("%s%-4d  progress predicted: %g, actual: %g", tag, ii, float(pred_prog[n]), obj - old_obj[n])
        else:
            log.info("%s%-4d  progress: %g", tag, ii, obj - old_obj[n])
        idxmax = res.idxmax[-1]
        push_label = f" ({labels[p.push_channel]})" if labels is not None and p.push_channel < len(labels) else ""
        max_label = f" ({labels[idxmax[0]]})" if labels is not None and idxmax[0] < len(labels) else ""
        log.info("%s     push unit: %16s with value %g%s", tag, p.push_unit, obj, push_label)
        log.info("%s       Max idx: %16s with value %g%s", tag, idxmax, float(acts[n][idxmax]), max_label)
        log.info("%s             X: %g %g %g", tag, float(x[n].min()), float(x[n].max()), stats[n][2])
        log.info("%s          grad: %g %g %g", tag, float(grad[n].min()), float(grad[n].max()), stats[n][5])
        if stats[n][5] == 0:
            log.info("%sGrad exactly 0, failed", tag)
