"""Redirected ReLU: a ReLU whose backward pass lets some gradient through where the ordinary one is all zero.

Why: a unit that does not fire on the random starting image has zero gradient through its ReLU, so gradient
ascent never starts (lucid, ``lucid/misc/redirected_relu_grad.py``). The forward pass is unchanged: max(0, x)
(or min(max(0, x), 6) for ReLU6), so every activation, objective value and class score is exactly the model's.

Backward, with g the incoming gradient of the LOSS that the optimizer minimises (the render loop minimises
-objective, so g < 0 means "the objective wants this output larger"), x the input, and "blocked" meaning x < 0
(or x > 6 for ReLU6):

    ordinary   = 0 where blocked, else g                                  (the true gradient)
    redirected = 0 where (x < 0 and g > 0) or (x > 6 and g < 0), else g   (only the push back into the live range)
    result[n]  = ordinary[n]   if ordinary[n] has any non-zero entry      (n: each batch element separately)
                 redirected[n] otherwise

These are lucid's semantics, kept on purpose: the redirected gradient is used only for a batch element whose true
gradient through this layer is entirely zero (so a unit that fires gets its exact gradient), and even then only the
part that pushes a dead input back towards the live range passes (never the part that would push it further
down). lucent's ``RedirectedReLU`` instead scales the blocked gradient by 0.1 everywhere and always (a permanently
biased gradient); captum's passes the raw gradient, both directions, when the whole batch's gradient is zero (one
element's live gradient blocks the rescue of another's). Unlike lucid we do not switch the rule off after 16
optimizer steps: a plain ``nn.Module`` does not know the optimizer's step, and the rule only acts while an image's
true gradient through the layer is exactly zero, which stops happening as soon as the unit fires. Use
``redirect_relus(model)`` as a context manager around the first steps for lucid's schedule.

At x == 0 the ordinary gradient passes (lucid's ``where(x < 0, 0, g)``; PyTorch's own ReLU blocks it there).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, List, Optional, Tuple

import torch
from torch import nn


class RedirectedReLUFunction(torch.autograd.Function):
    """``clamp(x, 0, upper)`` forward (``upper`` None: no upper bound); lucid's redirected gradient backward (see
    the module docstring). x: (N, ...) with a batch dimension first."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, upper: Optional[float] = None) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.upper = upper
        return x.clamp(min=0) if upper is None else x.clamp(min=0, max=upper)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> Tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        return redirected_grad(x, grad, ctx.upper), None


def redirected_grad(x: torch.Tensor, grad: torch.Tensor, upper: Optional[float] = None) -> torch.Tensor:
    """The gradient RedirectedReLUFunction passes back: x, grad (N, ...) -> (N, ...) (see the module docstring)."""
    if x.dim() < 2:
        raise ValueError(f"redirected ReLU needs a batch dimension: input of shape {tuple(x.shape)}")
    below = x < 0
    blocked, wrong_way = below, below & (grad > 0)
    if upper is not None:
        above = x > upper
        blocked, wrong_way = blocked | above, wrong_way | (above & (grad < 0))
    zero = torch.zeros((), dtype=grad.dtype, device=grad.device)
    ordinary = torch.where(blocked, zero, grad)
    redirected = torch.where(wrong_way, zero, grad)
    alive = ordinary.flatten(1).ne(0).any(dim=1).view((-1,) + (1,) * (x.dim() - 1))
    return torch.where(alive, ordinary, redirected)


def redirected_relu(x: torch.Tensor) -> torch.Tensor:
    """max(0, x) with the redirected gradient."""
    return RedirectedReLUFunction.apply(x, None)


def redirected_relu6(x: torch.Tensor) -> torch.Tensor:
    """min(max(0, x), 6) with the redirected gradient (lucid's ``redirected_relu6_grad``)."""
    return RedirectedReLUFunction.apply(x, 6.0)


class RedirectedReLU(nn.Module):
    """A ReLU module (``upper=6.0``: a ReLU6) with the redirected gradient; no parameters, never in place."""

    def __init__(self, upper: Optional[float] = None):
        super().__init__()
        self.upper = upper

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return RedirectedReLUFunction.apply(x, self.upper)

    def extra_repr(self) -> str:
        return "" if self.upper is None else f"upper={self.upper}"


def _redirectable(module: nn.Module) -> Optional[RedirectedReLU]:
    """The RedirectedReLU that replaces ``module``, or None when it is not an nn.ReLU / nn.ReLU6."""
    if isinstance(module, nn.ReLU6):  # a Hardtanh, not an nn.ReLU
        return RedirectedReLU(6.0)
    if isinstance(module, nn.ReLU):
        return RedirectedReLU()
    return None


def replace_relus(model: nn.Module) -> List[Tuple[nn.Module, str, nn.Module]]:
    """Swap every ``nn.ReLU`` / ``nn.ReLU6`` submodule of ``model`` for a RedirectedReLU under the same name, in
    place; returns ``[(parent, name, original)]`` for ``restore_relus``. ReLUs called functionally
    (``F.relu`` inside a forward) are not reached; in-place ReLUs become out-of-place ones (same values)."""
    swapped = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            replacement = _redirectable(child)
            if replacement is not None:
                setattr(parent, name, replacement)
                swapped.append((parent, name, child))
    return swapped


def restore_relus(swapped: List[Tuple[nn.Module, str, nn.Module]]) -> None:
    """Undo ``replace_relus``."""
    for parent, name, original in reversed(swapped):
        setattr(parent, name, original)


@contextlib.contextmanager
def redirect_relus(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block, every ``nn.ReLU`` / ``nn.ReLU6`` module of ``model`` is a RedirectedReLU (forward values
    unchanged); the originals are back on exit, also when the block raises. Yields the model."""
    swapped = replace_relus(model)
    try:
        yield model
    finally:
        restore_relus(swapped)
