"""The network part of a loop as one program: the forward pass to the captured layers and the backward pass to the
input, prepared (batch norms folded, memory format), traced into one graph and compiled, or run as written.

Both loops (``dvtoolbox.optimize`` and ``dvtoolbox.optvis``) write their network step as a plain function of
tensors, ``fn(x, *more) -> tuple of tensors``, that runs the model under a ``LayerCapture`` (hooks, the early stop
of ``forward_captured``) and ``torch.autograd.grad``. ``Program(fn, ...)`` runs it:

- ``compiled=False``: ``fn`` itself, eagerly (under ``torch.autocast`` when ``autocast_dtype`` is given);
- ``compiled=True``: once per input signature (shapes, dtypes, strides, device), ``fn`` is traced with
  ``make_fx`` on fake tensors into ONE aten graph holding the forward to the last captured layer (the hooks and
  the early stop run in Python while tracing, so the graph simply ends there) and the input-gradient backward
  (the backward of every custom autograd function included); then ``torch.compile`` (inductor, ``fullgraph=True``,
  static shapes) compiles that graph. Tracing on fake tensors refuses any data-dependent Python (``.item()``,
  ``if tensor``), so a traced program never syncs with the host: it can be captured in a CUDA graph. The model's
  parameters are constants of the graph (the loops never change them).

``prepare_network(model, keep, example, fold, memory_format)``: the module the function should run: the model with
its batch norms folded into the convolutions before them (``fold.py``; ``keep``: the captured layers, never
folded away) and/or in channels_last memory format. ``CapturedNetwork``: that module with its capture, what a
step function calls for the captured outputs.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import logging
import time
from typing import Callable, Dict, Iterable, Optional, Tuple

import torch
from torch import nn

from dvtoolbox.errors import UsageError
from dvtoolbox.models.capture import LayerCapture, StopForward, forward_captured
from dvtoolbox.models.fold import fold_batch_norms

log = logging.getLogger(__name__)


_TRACING = contextvars.ContextVar("dvtoolbox_program_tracing", default=False)


def is_tracing() -> bool:
    """True while ``Program.trace`` runs: a layer with a data-dependent fast path (Caffe's row-skipping
    InnerProduct on the CPU) takes its plain path then, which a graph can hold."""
    return _TRACING.get()


def autocast(device: torch.device, dtype: Optional[torch.dtype]):
    """``torch.autocast(device.type, dtype)`` when dtype is given, else a context that does nothing."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def prepare_network(model: nn.Module, keep: Iterable[str], example: torch.Tensor, fold: bool = False,
                    memory_format: torch.memory_format = torch.contiguous_format) -> nn.Module:
    """The module a program runs: ``model`` itself, or a copy with batch norms folded (not those of ``keep``'s
    convolutions) and/or its 4-D parameters in ``memory_format``. example: one input, e.g. zeros (1, 3, H, W)."""
    network = model
    if fold:
        network, pairs = fold_batch_norms(model, example, keep)
        log.debug("folded %d batch norms into their convolutions", len(pairs))
    if memory_format != torch.contiguous_format:
        network = (copy.deepcopy(model) if network is model else network).to(memory_format=memory_format)
    return network


class CapturedNetwork:
    """The module a loop's step runs, with its ``LayerCapture``: prepared on the first call (the input size is
    known then) by ``prepare_network``, and run by ``forward(x) -> {name: output}`` (the capture emptied again).

    names: the layers to capture; stop_when_complete: end the forward pass at the last of them. fold,
    memory_format: see ``prepare_network``. The hooks are set for each call, or once for a whole loop inside
    ``with network.hooked():``.
    """

    def __init__(self, model: nn.Module, names: Iterable[str], stop_when_complete: bool, fold: bool = False,
                 memory_format: torch.memory_format = torch.contiguous_format):
        self.model, self.names, self.stop = model, set(names), stop_when_complete
        self.fold, self.memory_format = fold, memory_format
        self.module: Optional[nn.Module] = None
        self.capture: Optional[LayerCapture] = None
        self._hooked = False

    def prepare(self, x: torch.Tensor) -> nn.Module:
        """The prepared module (made once, for inputs shaped like x)."""
        if self.module is None:
            example = torch.zeros((1,) + tuple(x.shape[1:]), dtype=torch.float32, device=x.device)
            self.module = prepare_network(self.model, self.names, example, self.fold, self.memory_format)
            self.capture = LayerCapture(self.module, self.names, stop_when_complete=self.stop)
        return self.module

    @contextlib.contextmanager
    def hooked(self, x: torch.Tensor):
        """Keep the capture's hooks set for the block (a loop of many calls), removed at its end."""
        self.prepare(x)
        with self.capture:
            self._hooked = True
            try:
                yield self
            finally:
                self._hooked = False

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The captured outputs for x (in the graph when x requires grad)."""
        self.prepare(x)
        if self.memory_format != torch.contiguous_format:
            x = x.contiguous(memory_format=self.memory_format)
        if self._hooked:
            try:
                self.module(x)
            except StopForward:
                pass
        else:
            forward_captured(self.module, self.capture, x)
        outputs = dict(self.capture.outputs)
        self.capture.outputs.clear()
        return outputs


def signature(args: Tuple[torch.Tensor, ...]) -> Tuple:
    """What a traced graph is specialised to: each tensor's shape, dtype, strides and device."""
    return tuple((tuple(a.shape), a.dtype, tuple(a.stride()), a.device) for a in args)


class Program:
    """``fn`` run eagerly or traced and compiled (see the module docstring).

    fn: ``(*tensors) -> tuple of tensors``, pure apart from hooks it sets and removes itself. device: where it runs
    (for autocast). autocast_dtype: None (the model's float32) or torch.bfloat16 (autocast of the forward and
    backward). compiled: trace and compile. compile_options: passed to ``torch.compile`` (e.g. ``mode``).
    """

    def __init__(self, fn: Callable, device: torch.device, compiled: bool = False,
                 autocast_dtype: Optional[torch.dtype] = None, compile_options: Optional[dict] = None,
                 name: str = "program"):
        self.fn, self.device, self.compiled, self.autocast_dtype = fn, torch.device(device), compiled, autocast_dtype
        self.compile_options = dict(compile_options or {})
        self.name = name
        self._graphs: Dict[Tuple, Callable] = {}

    def __call__(self, *args: torch.Tensor):
        if not self.compiled:
            with autocast(self.device, self.autocast_dtype):
                return self.fn(*args)
        key = signature(args)
        graph = self._graphs.get(key)
        if graph is None:
            if self._graphs:
                log.warning("%s: compiling again, for inputs %s (graph %d of this program): every new input shape "
                            "costs another compile", self.name, [tuple(a.shape) for a in args], len(self._graphs) + 1)
            graph = self._graphs[key] = self._build(args)
        return graph(*args)

    def trace(self, *args: torch.Tensor) -> torch.fx.GraphModule:
        """``fn`` traced on fake tensors shaped as ``args``: one aten graph (forward and backward)."""
        from torch.fx.experimental.proxy_tensor import make_fx

        fn = self.fn

        def step(*tensors):  # a plain function of the tensors (make_fx counts a bound method's self)
            return fn(*tensors)

        token = _TRACING.set(True)
        try:
            with autocast(self.device, self.autocast_dtype):
                return make_fx(step, tracing_mode="fake", _allow_non_fake_inputs=True)(*args)
        finally:
            _TRACING.reset(token)

    def _build(self, args) -> Callable:
        start = time.perf_counter()
        try:
            graph = self.trace(*args)
        except Exception as exc:  # data-dependent Python, an op fake tensors cannot run: the user's model or objective
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UsageError(f"engine compiled: {self.name} cannot be traced into one graph ({type(exc).__name__}: "
                             f"{first}); run it with engine eager or folded", "engine") from exc
        log.info("%s: traced %d graph nodes for inputs %s in %.1f s", self.name, len(graph.graph.nodes),
                 [tuple(a.shape) for a in args], time.perf_counter() - start)
        return torch.compile(graph, fullgraph=True, dynamic=False, **self.compile_options)
