"""Layers reached by name through forward hooks.

``LayerCapture(model, names)`` is a context manager: inside it, every forward pass stores the output of each
named submodule in ``capture.outputs[name]`` (the tensor itself, still in the autograd graph; for a module that
returns a tuple, such as an attention layer, or a mapping, such as transformers' ``ModelOutput``, its first
tensor). Hooks are removed on exit, also when the body
raises. Names are ``named_layers(model)``'s: ``model.named_modules()`` names (dotted paths such as
``_blocks.3._depthwise_conv``), except that a model wrapping a network (``layer_prefix``, e.g. "net.") shows the
network's own names without that prefix (``layer4``, ``encoder.layers.encoder_layer_11``); an unknown name raises a
UsageError that lists the valid ones.

A model may declare ``gradient_sources``, a dict from a layer name to the name of the module whose output the
backward pass starts from for that layer. Caffe models use it for blobs that an in-place layer overwrites: the
original reads ``conv1`` after its in-place ReLU but starts backward at the convolution (see doc/caffe-models.md).
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Mapping, Tuple

import torch
from torch import nn

from dvtoolbox.errors import UsageError


def named_layers(model: nn.Module) -> Dict[str, nn.Module]:
    """Every named submodule except the root, by its dotted name; under a model's ``layer_prefix`` (a wrapped
    network) the network's own names, unprefixed, with the wrapper's other modules after them."""
    prefix = getattr(model, "layer_prefix", "")
    inner = {name[len(prefix):]: module for name, module in model.named_modules()
             if prefix and name.startswith(prefix) and len(name) > len(prefix)}
    outer = {name: module for name, module in model.named_modules()
             if name and name + "." != prefix and not (prefix and name.startswith(prefix)) and name not in inner}
    return {**inner, **outer}


def gradient_source(model: nn.Module, layer: str) -> str:
    """The module whose output backward starts from when ``layer`` is pushed (usually ``layer`` itself)."""
    return getattr(model, "gradient_sources", {}).get(layer, layer)


def resolve_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name``; a UsageError listing the valid names when there is none."""
    layers = named_layers(model)
    if name not in layers:
        raise UsageError(f"unknown layer {name!r}; valid layers: {', '.join(layers)}")
    return layers[name]


class StopForward(Exception):
    """Raised by a LayerCapture with stop_when_complete=True once every named layer has produced its output."""


class LayerCapture:
    """Record the outputs of named submodules during forward passes (see the module docstring).

    stop_when_complete: raise StopForward as soon as every named layer has run, so that a forward pass costs only
    the layers up to the last captured one (the caller catches it).
    """

    def __init__(self, model: nn.Module, names: Iterable[str], stop_when_complete: bool = False):
        self.modules = {name: resolve_layer(model, name) for name in names}
        self.outputs: Dict[str, torch.Tensor] = {}
        self.stop_when_complete = stop_when_complete
        self._handles: List = []

    def __enter__(self) -> "LayerCapture":
        for name, module in self.modules.items():
            self._handles.append(module.register_forward_hook(self._hook_for(name)))
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        return False

    def _hook_for(self, name):
        def hook(_module, _inputs, output):
            self.outputs[name] = first_tensor(output)
            if self.stop_when_complete and len(self.outputs) == len(self.modules):
                raise StopForward()

        return hook


def first_tensor(output):
    """A module's output, or the first tensor of a tuple / list output (an attention layer's values) or of a
    mapping such as transformers' ``ModelOutput`` (an encoder's ``last_hidden_state``)."""
    if isinstance(output, (tuple, list)):
        return next((o for o in output if isinstance(o, torch.Tensor)), output)
    if isinstance(output, Mapping):
        return next((o for o in output.values() if isinstance(o, torch.Tensor)), output)
    return output


def forward_captured(model: nn.Module, capture: LayerCapture, x: torch.Tensor) -> None:
    """Run x through the model with ``capture``'s hooks, stopping early when the capture has all it needs
    (``stop_when_complete``): the outputs are in ``capture.outputs``. Traced on fake tensors (``program.py``), the
    early stop is Python that runs while tracing, so the graph ends at the last captured layer."""
    with capture:
        try:
            model(x)
        except StopForward:
            pass


def layer_shapes(model: nn.Module, size: Tuple[int, int], device="cpu") -> Dict[str, Tuple[int, ...]]:
    """Output shape (without the batch dimension) of every named submodule whose output is a tensor, in the
    order the forward pass reaches them. x: zeros of shape (1, 3, H, W)."""
    shapes: Dict[str, Tuple[int, ...]] = {}

    def hook_for(name):
        def hook(_module, _inputs, output):
            output = first_tensor(output)
            if isinstance(output, torch.Tensor) and name not in shapes:
                shapes[name] = tuple(output.shape[1:])

        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in named_layers(model).items()]
    try:
        with torch.no_grad():
            model(torch.zeros((1, 3) + tuple(size), device=device))
    finally:
        for handle in handles:
            handle.remove()
    return shapes


OTHER_SIZE_FACTORS = (0.9, 1.15)   # the standard transforms make images of about 0.95 .. 1.16 of the image's side


def takes_other_sizes(model: nn.Module, size: Tuple[int, int]) -> bool:
    """True when ``model`` runs on zeros of 0.9 and 1.15 times ``size`` (H, W) (one dry forward pass each, on its
    parameters' device and dtype): a network with global pooling does; a ViT with fixed position embeddings, or a
    classifier that flattens a fixed grid, does not."""
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
    for factor in OTHER_SIZE_FACTORS:
        other = tuple(max(1, round(side * factor)) for side in size)
        try:
            with torch.no_grad():
                model(torch.zeros((1, 3) + other, device=device, dtype=dtype))
        except (AssertionError, RuntimeError, ValueError):  # torchvision's, timm's and transformers' size checks
            return False
    return True
