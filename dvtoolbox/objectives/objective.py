"""The ``Objective``: what feature visualisation MAXIMISES, a small named closure that combines with arithmetic.

Contract: an ``Objective`` is called on ``acts``, a mapping from layer name to that layer's output in this forward
pass (an ``Activations``: the tensors ``LayerCapture`` recorded, still in the autograd graph, plus ``"input"``, the
(N, 3|4, H, W) image in [0, 1] before the transforms, and ``acts.labels``, the model's class names or None), and
returns a 0-dim tensor to MAXIMISE (lucid's sign; lucent returns the negation, a loss).

Arithmetic: ``a + b``, ``a - b``, ``-a``, ``a + 1.0``, ``2 * a``, ``a * 2``, ``a / 2``, ``sum([a, b, c])``,
``Objective.sum([...])``; the product of two objectives is a TypeError. Each objective declares the layers it reads
(``Objective.layers``), so the engines hook only those and reject unknown names before optimizing; an objective
made from a plain callable declares None (every layer is hooked). ``wrap_objective`` turns a closure factory into
an Objective factory named and described after its arguments (lucent's decorator).
"""

from __future__ import annotations

import functools
import inspect
import numbers
from typing import Callable, FrozenSet, Iterable, Mapping, Optional, Sequence, Union

import torch

from dvtoolbox.models.layouts import NC, NCHW, UNKNOWN, Layout, canonical, with_include_prefix

INPUT = "input"

Batch = Union[None, int, Sequence[int]]


class Activations(dict):
    """Layer name -> output tensor for one forward pass, plus ``"input"``; ``labels``: class names or None;
    ``layouts``: layer name -> ``Layout`` (``dvtoolbox.models.layouts``), where each output's channels are.

    ``channels_first(name)``: the output with its channels first (``layouts.canonical``), which every objective
    reads. A layer without a layout is read as it comes when that is unambiguous, (N, C) or (N, C, H, W) channels
    first (``"input"``, hand-made activations); a 3-D output without one is a UsageError (tokens or not?)."""

    def __init__(self, outputs: Mapping[str, torch.Tensor], labels: Optional[Sequence[str]] = None,
                 layouts: Optional[Mapping[str, Layout]] = None):
        super().__init__(outputs)
        self.labels = None if labels is None else tuple(labels)
        self.layouts = dict(layouts or {})

    def layout(self, name: str, t: torch.Tensor) -> Layout:
        if name in self.layouts:
            return self.layouts[name]
        if t.dim() in (2, 4):
            return NC if t.dim() == 2 else NCHW
        return Layout(UNKNOWN)

    def channels_first(self, name: str, t: torch.Tensor, include_prefix: bool = False) -> torch.Tensor:
        """``t`` (this layer's output, or a slice of it along the batch) with its channels first."""
        return canonical(t, with_include_prefix(self.layout(name, t), include_prefix), name)


# ---------------------------------------------------------------------------------------------------- Objective


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, torch.Tensor)


def _union(a: Optional[FrozenSet[str]], b: Optional[FrozenSet[str]]) -> Optional[FrozenSet[str]]:
    return None if a is None or b is None else a | b


class Objective:
    """A function ``acts -> 0-dim tensor to maximise`` with a name, a description and the layers it reads."""

    def __init__(self, fn: Callable[[Mapping[str, torch.Tensor]], torch.Tensor], name: str = "",
                 description: str = "", layers: Optional[Iterable[str]] = None):
        self.fn = fn
        self.name = name
        self.description = description or name or getattr(fn, "__name__", "objective")
        self.layers = None if layers is None else frozenset(layers)

    def __call__(self, acts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.fn(acts)

    def __repr__(self) -> str:
        return f"Objective({self.description})"

    def __str__(self) -> str:
        return self.description

    # arithmetic ---------------------------------------------------------------------------------------------
    def __add__(self, other):
        if isinstance(other, Objective):
            return Objective(lambda acts: self(acts) + other(acts), f"{self.name} + {other.name}",
                             f"({self} + {other})", _union(self.layers, other.layers))
        if _is_number(other):
            return Objective(lambda acts: self(acts) + other, self.name, f"({self} + {other})", self.layers)
        raise TypeError(f"an Objective can be added to an Objective or a number, got {type(other).__name__}")

    def __radd__(self, other):
        if _is_number(other) and other == 0:  # sum([...]) starts from 0
            return self
        return self.__add__(other)

    def __neg__(self):
        return Objective(lambda acts: -self(acts), self.name, f"-{self}", self.layers)

    def __sub__(self, other):
        if isinstance(other, Objective):
            return Objective(lambda acts: self(acts) - other(acts), f"{self.name} - {other.name}",
                             f"({self} - {other})", _union(self.layers, other.layers))
        if _is_number(other):
            return Objective(lambda acts: self(acts) - other, self.name, f"({self} - {other})", self.layers)
        raise TypeError(f"an Objective can be subtracted by an Objective or a number, got {type(other).__name__}")

    def __rsub__(self, other):
        if _is_number(other):
            return Objective(lambda acts: other - self(acts), self.name, f"({other} - {self})", self.layers)
        raise TypeError(f"only a number or an Objective can subtract an Objective, got {type(other).__name__}")

    def __mul__(self, other):
        if _is_number(other):
            return Objective(lambda acts: other * self(acts), self.name, f"{other} * {self}", self.layers)
        raise TypeError(f"an Objective can only be multiplied by a number, got {type(other).__name__}")

    __rmul__ = __mul__

    def __truediv__(self, other):
        if _is_number(other):
            if other == 0:
                raise ZeroDivisionError(f"division of objective {self} by zero")
            return Objective(lambda acts: self(acts) / other, self.name, f"{self} / {other}", self.layers)
        raise TypeError(f"an Objective can only be divided by a number, got {type(other).__name__}")

    @staticmethod
    def sum(objectives: Iterable["Objective"]) -> "Objective":
        """The sum of one or more objectives."""
        objectives = list(objectives)
        if not objectives:
            raise ValueError("Objective.sum needs at least one objective")
        return functools.reduce(lambda a, b: a + b, objectives)


def _arg_str(value) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return "..." if len(text) > 15 or "\n" in text else text


def wrap_objective(layer_args: Sequence[str] = ("layer",), reads: Sequence[str] = ()):
    """Decorator: turn a closure factory ``f(args) -> (acts -> tensor)`` into ``f(args) -> Objective`` named after
    ``f``, described by its arguments, reading the layers named by the arguments ``layer_args`` plus ``reads``."""

    def decorate(factory):
        signature = inspect.signature(factory)

        @functools.wraps(factory)
        def build(*args, **kwargs):
            given = signature.bind(*args, **kwargs)
            full = signature.bind(*args, **kwargs)
            full.apply_defaults()
            fn = factory(*full.args, **full.kwargs)
            parts = []
            for key, value in given.arguments.items():
                required = signature.parameters[key].default is inspect.Parameter.empty
                parts.append(_arg_str(value) if required else f"{key}={_arg_str(value)}")
            layers = [full.arguments[name] for name in layer_args] + list(reads)
            return Objective(fn, factory.__name__, f"{factory.__name__}({', '.join(parts)})", layers)

        return build

    return decorate
