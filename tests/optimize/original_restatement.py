"""The original optimizer loop (``optimize/gradient_optimizer.py`` of deep-visualization-toolbox, ``_optimize``),
restated in numpy and scipy with the precision it ran at: the image ``xx`` and ``x0`` float64, the network float32.

Only the network is not restated: ``forward_backward(xx)`` stands for Caffe's ``forward_all`` + ``backward_from_
layer`` and returns float32 numbers, as Caffe's blobs held them. Everything else is the original's numpy arithmetic
under the casting rules of 2015's numpy (NumPy < 2), written out where NumPy 2 would compute otherwise:

- ``lr * grad`` (a Python float times a float32 array) was a float32 product: ``np.float32(lr) * grad``;
- ``norm(grad)`` of a float32 gradient is float32; ``norm(grad)**2`` and ``1 - obj`` (numpy scalars with Python
  numbers) were float64.

Used by tests/optimize/test_loop_reference.py and benchmarks/fidelity_trace.py; independent of dvtoolbox's loop.
"""

import numpy as np
import torch
from scipy.ndimage import gaussian_filter


def torch_forward_backward(model, value_layer, source_layer, unit, push_dir):
    """A ``forward_backward(xx)`` for a float32 torch model: the value of ``value_layer`` (C, H, W) float32 (FC
    outputs promoted to (C, 1, 1)) and the float32 gradient (1, 3, H, W) of ``push_dir`` times ``unit`` of
    ``source_layer`` (the layer backward starts from) with respect to float32(xx), through plain forward hooks."""
    modules = dict(model.named_modules())

    def forward_backward(xx):
        outputs = {}
        handles = [modules[name].register_forward_hook(
            lambda mod, inp, out, name=name: outputs.__setitem__(name, out)) for name in {value_layer, source_layer}]
        try:
            x = torch.from_numpy(np.asarray(xx, np.float32)).requires_grad_(True)
            model(x)
        finally:
            for handle in handles:
                handle.remove()
        source = outputs[source_layer]
        source = source[:, :, None, None] if source.dim() == 2 else source
        (grad,) = torch.autograd.grad(source[(0,) + tuple(unit)] * push_dir, x)
        acts = outputs[value_layer].detach()[0].numpy()
        acts = acts[:, None, None] if acts.ndim == 1 else acts
        return acts.astype(np.float32), grad.numpy().astype(np.float32)

    return forward_backward


def correctly_rounded_norm(grad):
    """``norm(grad)`` of a float32 array as float32(sqrt(float32(exact sum of squares))): what dvtoolbox computes,
    where numpy's ``norm`` rounds along BLAS's ``sdot``. The two differ by a few float32 ulps."""
    dot = np.float32(np.sum(np.asarray(grad, np.float64) ** 2))
    return np.sqrt(dot)


def original_loop(forward_backward, p, x0, mean, grad_norm=np.linalg.norm):
    """The original's ``_optimize(params, x0)``: a dict of the records FindResults keeps. p: FindParams-like; x0,
    mean: (3, H, W) float64. Pushes with push_dir > 0 record the original's ``obj > best_obj``; < 0 the mirror.
    grad_norm: numpy's ``norm`` (the original's), or another float32 norm to measure what its rounding does."""
    xx = np.array(x0, np.float64)[np.newaxis]
    mean = np.asarray(mean, np.float64)
    rec = dict(ii=[], obj=[], idxmax=[], norm=[], dist=[], std=[], best_obj=None, best_ii=None, best_xx=None,
               majority_ii=None, majority_xx=None, last_xx=None, meta=None)
    push_unit = (p.push_channel,) + tuple(p.push_spatial)
    for ii in range(p.max_iter):
        xx = np.minimum(255.0, np.maximum(0.0, xx + mean)) - mean                       # 0. crop
        acts, grad = forward_backward(xx)                                               # 1. forward (4.)
        idxmax = np.unravel_index((acts * np.sign(p.push_dir)).argmax(), acts.shape)
        idxmax = tuple(int(i) for i in idxmax)
        obj = acts[push_unit]
        rec["ii"].append(ii)                                                            # 2. record
        rec["obj"].append(obj)
        rec["idxmax"].append(idxmax)
        rec["norm"].append(np.linalg.norm(xx[0]))
        rec["dist"].append(np.linalg.norm(xx[0] - x0))
        rec["std"].append(xx[0].flatten().std())
        if idxmax == push_unit and rec["majority_ii"] is None:
            rec["majority_ii"], rec["majority_xx"] = ii, xx[0].copy()
        if rec["best_obj"] is None or (obj > rec["best_obj"] if p.push_dir > 0 else obj < rec["best_obj"]):
            rec["best_obj"], rec["best_ii"], rec["best_xx"] = obj, ii, xx[0].copy()
        rec["last_xx"] = xx[0].copy()
        if grad_norm(grad) == 0:
            rec["meta"] = "Metaresult: grad 0 failure"
            break
        lrp = p.lr_params                                                               # 5. learning rate
        if p.lr_policy == "progress01":
            late_prog = lrp["late_prog_mult"] * (1 - np.float64(obj))
            desired_prog = min(lrp["early_prog"], late_prog)
            lr = min(lrp["max_lr"], desired_prog / np.float64(grad_norm(grad)) ** 2)
        elif p.lr_policy == "progress":
            lr = min(lrp["max_lr"], lrp["desired_prog"] / np.float64(grad_norm(grad)) ** 2)
        else:
            lr = lrp["lr"]
        if ii < p.max_iter - 1:                                                         # 6. step, regularize
            xx += np.float32(lr) * grad
            xx *= (1 - p.decay)
            if p.blur_every != 0 and p.blur_radius > 0 and ii % p.blur_every == 0:
                for channel in range(3):
                    xx[0, channel] = gaussian_filter(xx[0, channel], p.blur_radius)
            if p.small_val_percentile > 0:
                small_entries = abs(xx) < np.percentile(abs(xx), p.small_val_percentile)
                xx = xx - xx * small_entries
            if p.small_norm_percentile > 0:
                pxnorms = np.linalg.norm(xx, axis=1)
                smallpx = pxnorms < np.percentile(pxnorms, p.small_norm_percentile)
                xx = xx - xx * np.tile(smallpx[:, np.newaxis, :, :], (1, 3, 1, 1))
            if p.px_benefit_percentile > 0:
                px_benefit = (grad * -xx).sum(1)
                smallben = px_benefit < np.percentile(px_benefit, p.px_benefit_percentile)
                xx = xx - xx * np.tile(smallben[:, np.newaxis, :, :], (1, 3, 1, 1))
            if p.px_abs_benefit_percentile > 0:
                px_benefit = (grad * -xx).sum(1)
                smallaben = abs(px_benefit) < np.percentile(abs(px_benefit), p.px_abs_benefit_percentile)
                xx = xx - xx * np.tile(smallaben[:, np.newaxis, :, :], (1, 3, 1, 1))
    if rec["meta"] is None:
        rec["meta"] = ("Metaresult: majority success" if rec["majority_ii"] is not None
                       else "Metaresult: majority failure")
    return rec
