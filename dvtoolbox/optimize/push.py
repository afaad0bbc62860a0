"""Forward a batch through the model and backward from one pushed unit per image (phases 1 and 4 of the loop).

The value of a unit is read from the layer's output; the gradient starts at ``gradient_source(model, layer)``
(the same layer for every model except Caffe blobs overwritten by an in-place layer, where the original starts
backward at the layer that produced the blob). Each image's gradient is d(push_dir * unit) / d(image): the images
of a batch are independent because models run in eval mode.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import nn

from dvtoolbox.models.capture import LayerCapture, StopForward, gradient_source


def as_units3d(acts: torch.Tensor) -> torch.Tensor:
    """Layer output as (N, C, H, W): an (N, C) output becomes (N, C, 1, 1), as the original promotes FC layers."""
    if acts.dim() == 2:
        return acts[:, :, None, None]
    if acts.dim() == 4:
        return acts
    raise ValueError(f"expected a layer output of shape (N, C) or (N, C, H, W), got {tuple(acts.shape)}")


class UnitPush:
    """Callable: x (N, 3, H, W) -> (acts (N, C, H, W) detached, grad (N, 3, H, W)) for one pushed unit per image.

    units: (channel, y, x) per image; push_dirs: the value backward starts from, per image (1 maximises).
    """

    def __init__(self, model: nn.Module, layer: str, units: Sequence[Tuple[int, int, int]],
                 push_dirs: Sequence[float], device: torch.device):
        self.model = model
        self.layer = layer
        self.source = gradient_source(model, layer)
        self.capture = LayerCapture(model, {layer, self.source}, stop_when_complete=True)
        index = torch.as_tensor(units, dtype=torch.long, device=device)
        self.batch_index = torch.arange(len(units), device=device)
        self.channel, self.row, self.col = index[:, 0], index[:, 1], index[:, 2]
        self.push_dirs = torch.as_tensor(push_dirs, dtype=torch.float32, device=device)

    def __call__(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = x.detach().requires_grad_(True)
        with self.capture:
            try:
                self.model(x)
            except StopForward:
                pass
        acts = as_units3d(self.capture.outputs[self.layer])
        source = as_units3d(self.capture.outputs[self.source])
        pushed = source[self.batch_index, self.channel, self.row, self.col]
        (grad,) = torch.autograd.grad((pushed * self.push_dirs).sum(), x)
        self.capture.outputs.clear()
        return acts.detach(), grad
