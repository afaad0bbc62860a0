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
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from dvtoolbox.errors import UsageError
from dvtoolbox.models.layouts import Layout, model_layouts
from dvtoolbox.regularizers.lr_policies import gradient_step, learning_rate
from dvtoolbox.optimize.params import FindParams
from dvtoolbox.optimize.push import ObjectivePush, UnitPush
from dvtoolbox.optimize.recorder import Recorder, batch_statistics
from dvtoolbox.models.pixel_space import crop_to_valid_range
from dvtoolbox.regularizers.operations import regularize
from dvtoolbox.optimize.results import FindResults

log = logging.getLogger(__name__)


def optimize(model: nn.Module, params: Sequence[FindParams], x0: np.ndarray, mean: np.ndarray,
             layer_shape3d, progress: bool = False, labels: Optional[Sequence[str]] = None,
             label_layers: Sequence[str] = (), objective=None,
             state_dtype: torch.dtype = torch.float64,
             layouts: Optional[Dict[str, Layout]] = None) -> List[FindResults]:
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
    """
    p = _shared_schedule(params)
    _warn_small_blur(_blur_radius_if_used(p))
    device = next(iter(model.parameters()), torch.empty(0)).device
    if state_dtype not in (torch.float64, torch.float32):
        raise ValueError(f"state_dtype must be torch.float64 or torch.float32, got {state_dtype}")
    mean_t = torch.as_tensor(mean, device=device).to(state_dtype)
    x = torch.as_tensor(x0, device=device).to(state_dtype).clone()
    x0_t = x.clone()
    units = torch.as_tensor([q.push_unit for q in params], dtype=torch.long, device=device)
    signs = torch.as_tensor([np.sign(q.push_dir) for q in params], dtype=torch.float32, device=device)
    dirs = [q.push_dir for q in params]
    if layouts is None:
        layouts = model_layouts(model, tuple(x.shape[-2:]))
    push = UnitPush(model, p.push_layer, [q.push_unit for q in params], dirs, device, layouts) \
        if objective is None else ObjectivePush(model, p.push_layer, objective, dirs, device, layouts)
    recorder = Recorder(params, x0_t, layer_shape3d)
    bar = tqdm(range(p.max_iter), disable=not progress, desc=f"{p.push_layer} {_unit_label(params)}", leave=True)
    old_obj = pred_prog = None
    for ii in bar:
        x = crop_to_valid_range(x, mean_t)                                          # 0. crop to [0, 255]
        acts, grad = push(x.to(torch.float32))                                      # 1. forward (4. backward)
        stats_t = batch_statistics(acts, x, x0_t, grad, units, signs)
        if objective is not None:                                                   #    obj: the objective's
            stats_t[:, 0] = push.values
        stats = stats_t.tolist()
        recorder.update(ii, stats, x)                                               # 2. record
        _report(bar, ii, params, recorder, acts, x, grad, stats, old_obj, pred_prog,   # 3. progress
                labels if p.push_layer in label_layers else None)
        old_obj = [row[0] for row in stats]
        recorder.stop_zero_gradients(stats)                                         # 4. grad 0: stop
        if not any(recorder.active):
            break
        lr, pred_prog = learning_rate(p, grad, stats_t[:, 0])                       # 5. learning rate
        if ii < p.max_iter - 1:                                                     # 6. step, regularize
            stepped = regularize(x + gradient_step(lr, grad, x.dtype), grad, ii, p)
            active = torch.as_tensor(recorder.active, device=device).view(-1, 1, 1, 1)
            x = torch.where(active, stepped, x)
    bar.close()
    return recorder.finish()


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


def _report(bar, ii, params, recorder, acts, x, grad, stats, old_obj, pred_prog, labels) -> None:
    """tqdm postfix (obj and best so far) and, with -v, the original's per-iteration lines through logging."""
    if not bar.disable:
        if len(params) == 1:
            bar.set_postfix_str(f"obj={stats[0][0]:.4g} best={recorder.results[0].best_obj:.4g}", refresh=False)
        else:
            best = [r.best_obj for r in recorder.results]
            bar.set_postfix_str(f"mean obj={np.mean([s[0] for s in stats]):.4g} mean best={np.mean(best):.4g}",
                                refresh=False)
    if not log.isEnabledFor(logging.INFO):
        return
    for n, p in enumerate(params):
        if not recorder.active[n]:
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
