"""Forward a batch through the model and backward from one pushed unit per image (phases 1 and 4 of the loop),
or from a feature-visualisation objective (``ObjectivePush``).

The value of a unit is read from the layer's output; the gradient starts at ``gradient_source(model, layer)``
(the same layer for every model except Caffe blobs overwritten by an in-place layer, where the original starts
backward at the layer that produced the blob). Each image's gradient is d(push_dir * unit) / d(image): the images
of a batch are independent because models run in eval mode.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from dvtoolbox.errors import UsageError
from dvtoolbox.models.capture import LayerCapture, StopForward, gradient_source, named_layers
from dvtoolbox.models.layouts import Layout, canonical
from dvtoolbox.models.pixel_space import from_model_input
from dvtoolbox.objectives import INPUT, Activations, create_objective


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


def forward_captured(model: nn.Module, capture: LayerCapture, x: torch.Tensor) -> None:
    """Run x through the model with ``capture``'s hooks, stopping early when the capture has all it needs."""
    with capture:
        try:
            model(x)
        except StopForward:
            pass


class UnitPush:
    """Callable: x (N, 3, H, W) -> (acts (N, C, H, W) detached, grad (N, 3, H, W)) for one pushed unit per image.

    units: (channel, y, x) per image; push_dirs: the value backward starts from, per image (1 maximises).
    """

    def __init__(self, model: nn.Module, layer: str, units: Sequence[Tuple[int, int, int]],
                 push_dirs: Sequence[float], device: torch.device, layouts: Optional[Dict[str, Layout]] = None):
        self.model = model
        self.layer = layer
        self.source = gradient_source(model, layer)
        self.layouts = layouts or {}
        self.capture = LayerCapture(model, {layer, self.source}, stop_when_complete=True)
        index = torch.as_tensor(units, dtype=torch.long, device=device)
        self.batch_index = torch.arange(len(units), device=device)
        self.channel, self.row, self.col = index[:, 0], index[:, 1], index[:, 2]
        self.push_dirs = torch.as_tensor(push_dirs, dtype=torch.float32, device=device)

    def __call__(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = x.detach().requires_grad_(True)
        forward_captured(self.model, self.capture, x)
        acts = as_units3d(self.capture.outputs[self.layer], self.layouts.get(self.layer), self.layer)
        source = as_units3d(self.capture.outputs[self.source], self.layouts.get(self.source), self.source)
        pushed = source[self.batch_index, self.channel, self.row, self.col]
        (grad,) = torch.autograd.grad((pushed * self.push_dirs).sum(), x)
        self.capture.outputs.clear()
        return acts.detach(), grad


class ObjectivePush:
    """Callable like ``UnitPush``, but the gradient is that of an optvis ``Objective`` (``dvtoolbox.optvis``):
    x (N, 3, H, W) -> (acts of ``layer`` (N, C, H, W) detached, grad (N, 3, H, W) of ``push_dir_n * value_n``).

    The objective is evaluated on each image alone (every captured output sliced to element n, ``"input"`` the
    image as RGB in [0, 1] from the model's ``input_contract``), so the images of a batch stay independent and
    ``values`` (N,) float64 holds each image's objective, which the loop records as obj. ``layer`` (the push
    layer) is still captured for the loop's idxmax / ismax statistics. objective: an Objective or a string that
    ``dvtoolbox.objectives.create_objective`` reads; its layers are checked against the model now.
    """

    def __init__(self, model: nn.Module, layer: str, objective, push_dirs: Sequence[float], device: torch.device,
                 layouts: Optional[Dict[str, Layout]] = None):
        self.objective = create_objective(objective, model=model)
        self.layouts = layouts or {}
        self.model, self.layer, self.input_name = model, layer, INPUT
        self.contract = getattr(model, "input_contract", None)
        reads = self.objective.layers
        names = set(named_layers(model)) if reads is None else set(reads) - {INPUT}
        self.needs_input = reads is None or INPUT in reads
        if self.needs_input and self.contract is None:
            raise UsageError(f"objective {self.objective} reads the input image, but the model has no input_contract")
        self.capture = LayerCapture(model, names | {layer}, stop_when_complete=reads is not None)
        self.push_dirs = torch.as_tensor(push_dirs, dtype=torch.float32, device=device)
        self.values: Optional[torch.Tensor] = None

    def __call__(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = x.detach().requires_grad_(True)
        forward_captured(self.model, self.capture, x)
        outputs = dict(self.capture.outputs)
        self.capture.outputs.clear()
        if self.needs_input:
            outputs[self.input_name] = from_model_input(x, self.contract)
        labels = getattr(self.contract, "labels", None)
        values = torch.stack([self._value(outputs, n, labels) for n in range(x.shape[0])])
        (grad,) = torch.autograd.grad((values * self.push_dirs).sum(), x)
        self.values = values.detach().to(torch.float64)
        return as_units3d(outputs[self.layer], self.layouts.get(self.layer), self.layer).detach(), grad

    def _value(self, outputs, n: int, labels) -> torch.Tensor:
        value = self.objective(Activations({k: v[n:n + 1] for k, v in outputs.items()}, labels, self.layouts))
        if value.dim() != 0:
            raise UsageError(f"objective {self.objective} returned shape {tuple(value.shape)}, not a scalar")
        return value
