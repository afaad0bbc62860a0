"""Learning-rate policies of the original optimizer (phase 5 of the loop), per batch element.

Contract: ``(params, grad, obj) => (lr, pred_prog)``. ``grad`` is (N, 3, H, W) float32, ``obj`` the (N,)
objective values of the same step; each element gets its own rate from its own gradient norm, in float64 as the
original's Python floats. Policies, with ``g2 = |grad_n|^2`` (numpy's float32 norm over the element's 3*H*W values,
squared in float64):

- ``constant``: ``lr``; no predicted progress (None), as the original.
- ``progress``: ``min(max_lr, desired_prog / g2)``; pred_prog = ``lr * g2``.
- ``progress01`` (for outputs in [0, 1] such as softmax): desired = ``min(early_prog, late_prog_mult * (1 -
  obj))``, ``lr = min(max_lr, desired / g2)``; pred_prog = ``lr * g2``.

Where ``g2 == 0`` the original divided by zero; the loop stops such an element, and here it gets ``max_lr``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Mapping, Optional, Tuple

import torch

from dvtoolbox.errors import UsageError

REQUIRED_LR_KEYS = {
    "constant": ("lr",),
    "progress": ("max_lr", "desired_prog"),
    "progress01": ("max_lr", "early_prog", "late_prog_mult"),
}


def _is_real(value: Any) -> bool:
    """True for int/float-like numbers (numpy scalars included), False for bool and everything else."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def validate_lr_params(policy: str, params: Mapping[str, Any]) -> None:
    """Raise UsageError (one line) unless ``policy`` is known and ``params`` holds its keys as finite real
    numbers > 0 (a rate, a desired progress or a multiplier that is 0, negative, infinite or NaN would run the whole
    loop for nothing or to a NaN image).

    Extra keys are allowed (the original ignored them).
    """
    if policy not in REQUIRED_LR_KEYS:
        raise UsageError(f"unknown lr_policy {policy!r}; valid: {', '.join(REQUIRED_LR_KEYS)}", "lr_policy")
    if not isinstance(params, Mapping):
        raise UsageError(f"lr_params must be a dict, got {params!r}", "lr_params")
    required = REQUIRED_LR_KEYS[policy]
    missing = [key for key in required if key not in params]
    if missing:
        raise UsageError(
            f"lr_policy {policy!r} needs lr_params {', '.join(required)}; missing: {', '.join(missing)}",
            "lr_policy", "lr_params")
    bad = [f"{key}={params[key]!r}" for key in required if not _is_real(params[key])]
    if bad:
        raise UsageError(f"lr_params for lr_policy {policy!r} must be real numbers, got {', '.join(bad)}",
                         "lr_params", "lr_policy")
    bad = [f"{key}={params[key]!r}" for key in required if not (math.isfinite(params[key]) and params[key] > 0)]
    if bad:
        raise UsageError(f"lr_params for lr_policy {policy!r} must be finite and > 0, got {', '.join(bad)}",
                         "lr_params", "lr_policy")


def grad_dot(grad: torch.Tensor) -> torch.Tensor:
    """``dot(grad_n, grad_n)`` as the original's numpy gave it for a float32 gradient: a float32 number. Computed
    in float64 and rounded once (a BLAS ``sdot`` rounds along the way, so the original's own value differs from
    this one by a few float32 ulps, depending on its BLAS). grad: (N, ...) -> (N,) float32."""
    flat = grad.reshape(grad.shape[0], -1).to(torch.float64)
    return (flat * flat).sum(dim=1).to(torch.float32)


def squared_grad_norm(grad: torch.Tensor) -> torch.Tensor:
    """The original's ``norm(grad)**2``: numpy's float32 norm ``sqrt(dot)``, squared in float64. (N,) float64."""
    return torch.sqrt(grad_dot(grad)).to(torch.float64) ** 2


def _progress_lr(desired: torch.Tensor, g2: torch.Tensor, max_lr: float) -> torch.Tensor:
    """``lr = min(max_lr, desired / g2)``, max_lr where g2 == 0 (the original's division gave inf there): (N,)."""
    safe_g2 = torch.where(g2 == 0, torch.ones_like(g2), g2)
    prog_lr = desired / safe_g2
    return torch.where(g2 == 0, torch.full_like(g2, max_lr), torch.clamp(prog_lr, max=max_lr))


def learning_rate(p: Any, grad: torch.Tensor, obj: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """This step's learning rate per element, and the progress it predicts (None for 'constant').

    p: params with ``lr_policy`` and ``lr_params``. grad: (N, 3, H, W) float32; obj: (N,) objective values (the
    network's float32 numbers). Returns (lr (N,), pred_prog (N,) or None), float64 on grad's device: the original
    computed both as Python floats from numpy's float32 ``norm(grad)`` and ``obj``. pred_prog is
    ``lr * dot(grad, grad)``.
    """
    validate_lr_params(p.lr_policy, p.lr_params)
    lrp = p.lr_params
    if p.lr_policy == "constant":
        return torch.full((grad.shape[0],), float(lrp["lr"]), dtype=torch.float64, device=grad.device), None
    g2 = squared_grad_norm(grad)
    if p.lr_policy == "progress":
        desired = torch.full_like(g2, float(lrp["desired_prog"]))
    else:  # progress01
        obj = torch.as_tensor(obj, device=g2.device).to(torch.float64).reshape(g2.shape)
        late = float(lrp["late_prog_mult"]) * (1 - obj)
        desired = torch.clamp(late, max=float(lrp["early_prog"]))
    lr = _progress_lr(desired, g2, float(lrp["max_lr"]))
    return lr, lr * grad_dot(grad).to(torch.float64)


def gradient_step(lr: torch.Tensor, grad: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The original's ``lr * grad`` as numpy computed it, in ``dtype`` (the image state's).

    numpy multiplied a float32 array by a Python float in float32 (the rate rounded to float32 first), and
    ``xx += step`` widened that float32 step into the float64 image. lr: (N,) float64; grad: (N, 3, H, W) float32.
    """
    return (lr.to(grad.dtype).view(-1, *([1] * (grad.dim() - 1))) * grad).to(dtype)
