"""One unit in one image: the crop of its field, its deconv and backprop images, as the original wrote them.

x is the model input (1, 3, H, W) float32 in the model's pixel space (the input contract's channel order, mean
subtracted): the original's data-layer blob, so the crop shows exactly what the network saw.

- backprop: d unit / d x, the plain input gradient of the unit (the original's ``backward_from_layer`` with a one-hot
  at the unit).
- deconv: Zeiler & Fergus's deconvnet as the original's Caffe fork computed it (``deconv_from_layer``): the same
  backward pass from the same one-hot, except that every ReLU passes ``relu(incoming gradient)`` instead of the
  gradient masked by its forward input; max pooling routes the gradient to the forward pass's maxima (its switches),
  which is the ordinary max-pool backward; convolutions and linear layers are transposed as in backprop. Every ReLU
  the model calls, as ``nn.ReLU`` or ``F.relu`` / ``torch.relu`` / ``Tensor.relu`` (a torch function mode intercepts
  the calls; in-place variants are run out of place), is replaced; other nonlinearities (GELU, sigmoid, LeakyReLU)
  keep their ordinary backward. A model that calls no ReLU before the layer has no deconv: refused with one line.
- the norms: the L2 norm over the 3 channels, (H, W).

The unit: channel ``c`` at (y, x) of the layer's grid read through its layout (``dvtoolbox.models.layouts``;
default NCHW for a 4-D output, NC for a 2-D one, where (y, x) is ignored). Backward starts where the model says the
layer's gradient starts (``capture.gradient_source``: a Caffe blob overwritten by an in-place ReLU starts at its
convolution, as in the original).

Images are written as the original's ``save_caffe_image``: a (3, h, w) array turned to RGB through the contract's
channel order and scaled by ``norm01c`` around 0 (the crop, the deconv, the backprop: ``autoscale_center=0``, so 0
is mid grey and the largest magnitude reaches 0 or 1); a (h, w) norm min-max scaled to [0, 1] and shown grey.
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from dvtoolbox.errors import UsageError
from dvtoolbox.exemplars.receptive_field import CropBox
from dvtoolbox.io.images import save_image
from dvtoolbox.models.capture import LayerCapture, forward_captured, gradient_source
from dvtoolbox.models.layouts import Layout, canonical


class _DeconvReLU(torch.autograd.Function):
    """relu forward; relu of the incoming gradient backward (Zeiler & Fergus)."""

    @staticmethod
    def forward(ctx, x):
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, grad):
        return grad.clamp_min(0)


_RELUS = {F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_}


class DeconvReLUs(TorchFunctionMode):
    """Inside it, every ReLU call of a forward pass is a ``_DeconvReLU``; ``count`` says how many ran."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _RELUS:
            self.count += 1
            return _DeconvReLU.apply(args[0])
        return func(*args, **(kwargs or {}))


def _layout_of(out: torch.Tensor, layout: Optional[Layout]) -> Layout:
    if layout is not None:
        return layout
    if out.dim() in (2, 4):
        return Layout("NCHW" if out.dim() == 4 else "NC")
    raise UsageError(f"a layer output of shape {tuple(out.shape)} needs its layout (NCHW, NHWC, NTC, NC)", "layouts")


def unit_of(out: torch.Tensor, unit: Tuple[int, int, int], layout: Optional[Layout], layer: str) -> torch.Tensor:
    """The scalar of image 0 at unit (channel, y, x) of a layer output read through its layout."""
    grid = canonical(out, _layout_of(out, layout), layer)
    c, y, x = unit
    return grid[0, c, y, x] if grid.dim() == 4 else grid[0, c]


def unit_input_gradient(model: nn.Module, x: torch.Tensor, layer: str, unit: Tuple[int, int, int],
                        layout: Optional[Layout] = None, deconv: bool = False,
                        seed: Optional[torch.Tensor] = None) -> Tuple[np.ndarray, float]:
    """(d unit / d x of image 0 as (3, H, W) float32, model channel order; the unit's value) for the plain backward
    pass, or the deconv pass when ``deconv`` (see the module docstring). x: (1, 3, H, W). seed: the gradient to
    start from instead of the one-hot at ``unit`` (then ignored), of the layer's canonical shape for one image
    ((C, H, W), (C, T) or (C,)): the unit is then <seed, the layer's canonical output> (``seeded_input_gradient``)."""
    if seed is not None:
        return seeded_input_gradient(model, x, {layer: seed}, {layer: layout}, deconv)

    def read(outputs, sources):
        value = unit_of(outputs[layer], unit, layout, layer).detach()
        return value, unit_of(outputs[sources[layer]], unit, layout, layer)

    return _input_gradient(model, x, [layer], deconv, read)


def seeded_input_gradient(model: nn.Module, x: torch.Tensor, seeds: Mapping[str, torch.Tensor],
                          layouts: Mapping[str, Optional[Layout]], deconv: bool = False) -> Tuple[np.ndarray, float]:
    """(d/dx of sum over layers of <seeds[layer], the layer's canonical output of image 0>, as (3, H, W) float32;
    that sum's value): backprop, or deconv when ``deconv``, started from each seed (a direction at a position, a
    combination's coefficients) instead of a one-hot. seeds: {layer: (C, H, W), (C, T) or (C,)}; layouts: {layer:
    Layout or None (NCHW / NC by rank)}."""
    layers = list(seeds)

    def dot(output: torch.Tensor, layer: str) -> torch.Tensor:
        grid = canonical(output, _layout_of(output, layouts.get(layer)), layer)[0]
        return (grid.float() * seeds[layer].to(grid.device, torch.float32)).sum()

    def read(outputs, sources):
        value = sum(dot(outputs[layer], layer) for layer in layers).detach()
        return value, sum(dot(outputs[sources[layer]], layer) for layer in layers)

    return _input_gradient(model, x, layers, deconv, read)


def _input_gradient(model: nn.Module, x: torch.Tensor, layers: Sequence[str], deconv: bool,
                    read: Callable) -> Tuple[np.ndarray, float]:
    """One forward pass to the layers (their gradient sources too), ``read(outputs, sources) -> (value, start)``,
    and the input gradient of ``start``. sources: {layer: where its gradient starts} (``capture.gradient_source``)."""
    sources = {layer: gradient_source(model, layer) for layer in layers}
    x = x.detach().clone().requires_grad_(True)
    capture = LayerCapture(model, list(dict.fromkeys(list(layers) + list(sources.values()))),
                           stop_when_complete=True)
    with torch.enable_grad():
        if deconv:
            with DeconvReLUs() as mode:
                forward_captured(model, capture, x)
            if mode.count == 0:
                named = ("layer " if len(layers) == 1 else "layers ") + ", ".join(repr(layer) for layer in layers)
                raise UsageError(f"deconv needs ReLUs: the model calls no ReLU before {named} (deconv is "
                                 "defined for ReLU networks only); use backprop", "do_deconv")
        else:
            forward_captured(model, capture, x)
        value, start = read(capture.outputs, sources)
        (grad,) = torch.autograd.grad(start, x)
    return grad[0].detach().float().cpu().numpy(), float(value)


def crop(arr: np.ndarray, box: CropBox) -> np.ndarray:
    """(C, h, w) of box.size: zeros, with arr[:, src] placed at dst (the original's out_arr). arr: (C, H, W)."""
    out = np.zeros((arr.shape[0],) + tuple(box.size), np.float32)
    s, d = box.src, box.dst
    out[:, d.y0:d.y1, d.x0:d.x1] = arr[:, s.y0:s.y1, s.x0:s.x1]
    return out


def channel_norm(arr: np.ndarray) -> np.ndarray:
    """The L2 norm over the channels: (C, h, w) -> (h, w)."""
    return np.linalg.norm(arr, axis=0)


def norm01c(arr: np.ndarray, center: float) -> np.ndarray:
    """The original's norm01c: (arr - center) / (max(2 max, -2 min) + 1e-10) + 0.5, in [0, 1], center -> 0.5."""
    arr = np.array(arr, np.float64) - center
    arr /= max(2 * arr.max(), -2 * arr.min()) + 1e-10
    return arr + 0.5


def caffe_image01(arr: np.ndarray, channel_swap_to_rgb: Sequence[int], autoscale: bool = True,
                  autoscale_center: Optional[float] = None) -> np.ndarray:
    """The original's save_caffe_image before the file: (3, h, w) model order -> (h, w, 3) RGB, or (h, w) -> grey
    (h, w, 3); then norm01c around ``autoscale_center`` when given, else min-max scaling when ``autoscale``."""
    if arr.ndim == 2:
        img = np.repeat(np.asarray(arr, np.float64)[:, :, None], 3, axis=2)
    else:
        img = np.asarray(arr, np.float64)[list(channel_swap_to_rgb)].transpose(1, 2, 0)
    if autoscale_center is not None:
        return norm01c(img, autoscale_center)
    if autoscale:
        img = img - img.min()
        return img / (img.max() + 1e-10)
    return img


def save_centred(path: str, arr: np.ndarray, channel_swap_to_rgb: Sequence[int]) -> None:
    """A (3, h, w) crop, deconv or backprop as the original saved it (autoscale_center=0)."""
    save_image(path, np.clip(caffe_image01(arr, channel_swap_to_rgb, False, 0.0), 0, 1))


def save_norm(path: str, arr: np.ndarray) -> None:
    """A (h, w) norm image as the original saved it (min-max scaled, grey)."""
    save_image(path, np.clip(caffe_image01(arr, (0, 1, 2)), 0, 1))
