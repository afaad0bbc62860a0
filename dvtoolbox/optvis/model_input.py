"""Images of the feature-visualisation library to the pixel space every dvtoolbox model takes, and back.

Contract: ``(image01 (N, 3, H, W) float, RGB, values in [0, 1]) => x (N, 3, H, W) float``, the image on the 0..255
scale in the model's channel order minus the model's mean (``InputContract.mean``, per channel, model channel
order); see ``dvtoolbox/models/contract.py``. Differentiable; nothing modifies its input.
"""

from __future__ import annotations

import torch

from dvtoolbox.models.contract import InputContract


def _model_order(contract: InputContract):
    """Index that turns RGB channels into the model's order (RGB and BGR swaps are their own inverse)."""
    perm = contract.channel_swap_to_rgb  # model -> RGB
    inverse = [0, 0, 0]
    for model_index, rgb_index in enumerate(perm):
        inverse[rgb_index] = model_index
    return inverse


def _mean(contract: InputContract, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(contract.mean, dtype=like.dtype, device=like.device).view(1, 3, 1, 1)


def to_model_input(image01: torch.Tensor, contract: InputContract) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> (N, 3, H, W) ``image * 255`` in the model's channel order minus its mean."""
    if image01.dim() != 4 or image01.shape[1] != 3:
        raise ValueError(f"to_model_input needs an (N, 3, H, W) RGB image, got shape {tuple(image01.shape)}")
    order = _model_order(contract)
    if order != [0, 1, 2]:
        image01 = image01[:, order]
    return image01 * 255.0 - _mean(contract, image01)


def from_model_input(x: torch.Tensor, contract: InputContract) -> torch.Tensor:
    """The inverse of ``to_model_input``: (N, 3, H, W) pixel space -> (N, 3, H, W) RGB on the [0, 1] scale
    (not clipped)."""
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"from_model_input needs an (N, 3, H, W) tensor, got shape {tuple(x.shape)}")
    rgb = (x + _mean(contract, x)) / 255.0
    perm = list(contract.channel_swap_to_rgb)
    return rgb if perm == [0, 1, 2] else rgb[:, perm]
