"""Forward a batch through the model and backward from one pushed unit per image (phases 1 and 4 of the loop),
or from a feature-visualisation objective (``ObjectivePush``).

The value of a unit is read from the layer's output; the gradient starts at ``gradient_source(model, layer)``
(the same layer for every model except Caffe blobs overwritten by an in-place layer, where the original starts
backward at the layer that produced the blob). Each image's gradient is d(push_dir * unit) / d(image): the images
of a batch are independent because models run in eval mode.

Both pushes write their step as one function of tensors, ``_forward_backward``, run by a
``dvtoolbox.models.program.Program`` as the job's ``Execution`` says: eagerly on the model as built (engine
eager: the original's arithmetic), on a prepared copy (batch norms folded, memory format), traced into one graph
and compiled (engines compiled and graphs), in float32 or under bf16 autocast (precision bf16). Nothing in it reads
a value back to the host, so a compiled step can be captured in a CUDA graph.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Set, Tuple

import torch
from torch import nn

from dvtoolbox.device import Execution
from dvtoolbox.errors import UsageError
from dvtoolbox.models.capture import gradient_source, named_layers
from dvtoolbox.models.layouts import Layout, canonical
from dvtoolbox.models.pixel_space import from_model_input
from dvtoolbox.models.program import CapturedNetwork, Program
from dvtoolbox.models.program_cache import ProgramCache, ProgramKey
from dvtoolbox.objectives import INPUT, Activations, create_objective

EAGER = Execution("eager")


def as_units3d(output: torch.Tensor, layout: Layout = None, name: str = "layer") -> torch.Tensor:
    """A layer output as (N, C, H, W) units, its channels read through its ``layout`` (``models.layouts``; None:
    channels first): an (N, C) output becomes (N, C, 1, 1), as the original promotes FC layers; a token layer gives
    its patch tokens on their grid, (N, C, h, w), or (N, C, T, 1) without a grid."""
    acts = output if layout is None else canonical(output, layout, name)
    if acts.dim() == 2:
        return acts[:, :, None, None]
    if acts.dim() == 3:
        return acts[:, :, :, None]
    if acts.dim() == 4:
        return acts
    raise UsageError(f"layer {name!r} has output shape {tuple(output.shape)}; only (N, C) and grid layers hold "
                     "units", "push_layer")


def _entry(programs: ProgramCache, key: ProgramKey, model: nn.Module, names: Set[str], stop_when_complete: bool,
           execution: Execution, device: torch.device, step: Callable, name: str) -> Tuple[CapturedNetwork, Program]:
    """The (network, program) of ``key`` in ``programs``, made with ``step(network)`` the first time."""

    def make():
        network = CapturedNetwork(model, names, stop_when_complete, execution.fold, execution.memory_format(device))
        return network, Program(step(network), device, compiled=execution.compiled,
                                autocast_dtype=execution.autocast_dtype, name=name)

    return programs.get(key, make)


class UnitPush:
    """Callable: x (N, 3, H, W) -> (acts (N, C, H, W) detached, grad (N, 3, H, W)) for one pushed unit per image.

    units: (channel, y, x) per image; push_dirs: the value backward starts from, per image (1 maximises).
    execution: how the step runs (default: eager, float32). layouts: where layers' channels are
    (``models.layouts``; a layer not in it: channels first). programs: where the step's network and program are
    kept and found again (the owner's ``ProgramCache``: a job's, over the batches of a layer); default a cache of
    this push's own.
    """

    def __init__(self, model: nn.Module, layer: str, units: Sequence[Tuple[int, int, int]],
                 push_dirs: Sequence[float], device: torch.device, execution: Execution = EAGER,
                 layouts: Optional[Dict[str, Layout]] = None, programs: Optional[ProgramCache] = None):
        self.model = model
        self.layer = layer
        self.source = gradient_source(model, layer)
        layouts = layouts or {}
        read = (layouts.get(layer), layouts.get(self.source))
        index = torch.as_tensor(units, dtype=torch.long, device=device)
        self.channel, self.row, self.col = index[:, 0], index[:, 1], index[:, 2]
        self.push_dirs = torch.as_tensor(push_dirs, dtype=torch.float32, device=device)
        reader = _unit_reader(model, self.source)
        names = {layer, self.source} | ({reader.unit_source} if reader is not None else set())
        key = ProgramKey.of("unit", layer, read, execution, device)
        self.network, self.program = _entry(
            ProgramCache() if programs is None else programs, key, model, names, True, execution,
            device, lambda network: unit_step(network, layer, self.source, read, reader), f"push {layer}")

    def __call__(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        self.network.prepare(x)
        return self.program(x, self.channel, self.row, self.col, self.push_dirs)


def _unit_reader(model: nn.Module, source: str):
    """The module ``source`` when it computes a pushed unit from another layer's output itself (it has
    ``unit_source`` and ``read_units``, as a dictionary's tap does), else None."""
    module = named_layers(model).get(source)
    return module if hasattr(module, "read_units") and hasattr(module, "unit_source") else None


def unit_step(network: CapturedNetwork, layer: str, source: str,
              layouts: Tuple[Optional[Layout], Optional[Layout]] = (None, None), reader=None) -> Callable:
    """The push's step, a function of tensors: (x (N, 3, H, W) float32, channel, row, col (N,) long, push_dirs
    (N,) float32) -> (acts of ``layer`` as units (N, C, H, W) detached, d(push_dir_n * unit_n) / dx (N, 3, H, W)).
    layouts: those of ``layer`` and ``source`` (None: channels first). reader: a module that computes image n's
    unit of ``source`` from its ``unit_source`` layer's output (``read_units``; a dictionary's tap), so that
    backward never passes through the whole of ``source``; None: the unit is read from ``source``'s output."""

    def step(x: torch.Tensor, channel: torch.Tensor, row: torch.Tensor, col: torch.Tensor,
             push_dirs: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = x.detach().requires_grad_(True)
        outputs = network.forward(x)
        acts = as_units3d(outputs[layer], layouts[0], layer)
        if reader is not None:
            pushed = reader.read_units(outputs[reader.unit_source], channel, row, col)
        else:
            pushed = as_units3d(outputs[source], layouts[1], source)[torch.arange(x.shape[0], device=x.device),
                                                                      channel, row, col]
        (grad,) = torch.autograd.grad((pushed * push_dirs).sum(), x)
        return acts.detach(), grad.contiguous()

    return step


class ObjectivePush:
    """Callable like ``UnitPush``, but the gradient is that of an optvis ``Objective`` (``dvtoolbox.optvis``):
    x (N, 3, H, W) -> (acts of ``layer`` (N, C, H, W) detached, grad (N, 3, H, W) of ``push_dir_n * value_n``).

    The objective is evaluated on each image alone (every captured output sliced to element n, ``"input"`` the
    image as RGB in [0, 1] from the model's ``input_contract``), so the images of a batch stay independent and
    ``values`` (N,) float64 holds each image's objective, which the loop records as obj. ``layer`` (the push
    layer) is still captured for the loop's idxmax / ismax statistics. objective: an Objective or a string that
    ``dvtoolbox.objectives.create_objective`` reads; its layers are checked against the model now. programs: as
    ``UnitPush``'s (an objective given as a string shares its program with later pushes of the same string; an
    Objective or callable, only with pushes of that same object).
    """

    def __init__(self, model: nn.Module, layer: str, objective, push_dirs: Sequence[float], device: torch.device,
                 execution: Execution = EAGER, layouts: Optional[Dict[str, Layout]] = None,
                 programs: Optional[ProgramCache] = None):
        self.objective = create_objective(objective, model=model)
        self.layouts = layouts or {}
        self.model, self.layer, self.input_name = model, layer, INPUT
        self.contract = getattr(model, "input_contract", None)
        reads = self.objective.layers
        names = set(named_layers(model)) if reads is None else set(reads) - {INPUT}
        self.needs_input = reads is None or INPUT in reads
        if self.needs_input and self.contract is None:
            raise UsageError(f"objective {self.objective} reads the input image, but the model has no input_contract")
        self.push_dirs = torch.as_tensor(push_dirs, dtype=torch.float32, device=device)
        self.values: Optional[torch.Tensor] = None
        what = objective if isinstance(objective, str) else self.objective
        read = tuple(sorted((k, v) for k, v in self.layouts.items() if k in names | {layer}))
        key = ProgramKey.of("objective", layer, (what, read), execution, device)
        self.network, self.program = _entry(
            ProgramCache() if programs is None else programs, key, model, names | {layer}, reads is not None,
            execution, device, lambda network: self._forward_backward, f"objective {self.objective}")

    def _forward_backward(self, x: torch.Tensor, push_dirs: torch.Tensor):
        """The step (see the class docstring): -> (acts, values (N,) float64, grad)."""
        x = x.detach().requires_grad_(True)
        outputs = self.network.forward(x)
        if self.needs_input:
            outputs[self.input_name] = from_model_input(x, self.contract)
        labels = getattr(self.contract, "labels", None)
        values = torch.stack([self._value(outputs, n, labels) for n in range(x.shape[0])])
        (grad,) = torch.autograd.grad((values * push_dirs).sum(), x)
        acts = as_units3d(outputs[self.layer], self.layouts.get(self.layer), self.layer)
        return acts.detach(), values.detach().to(torch.float64), grad.contiguous()

    def __call__(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        self.network.prepare(x)
        acts, self.values, grad = self.program(x, self.push_dirs)
        return acts, grad

    def _value(self, outputs, n: int, labels) -> torch.Tensor:
        value = self.objective(Activations({k: v[n:n + 1] for k, v in outputs.items()}, labels, self.layouts))
        if value.dim() != 0:
            raise UsageError(f"objective {self.objective} returned shape {tuple(value.shape)}, not a scalar")
        return value
