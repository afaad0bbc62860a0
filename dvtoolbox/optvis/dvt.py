"""DVT's post-step regularizers and learning-rate policies inside the feature-visualisation loop.

The deep-visualization-toolbox optimizer changes the image itself after each step (L2 decay, Gaussian blur every k
steps, four percentile clips: ``dvtoolbox.regularizers.operations``) and sets its step size from the gradient
(``dvtoolbox.regularizers.lr_policies``). Here those same functions serve ``FeatureViz.visualize``:

- ``Regularizers(decay=..., blur_radius=..., ...)`` (``dvtoolbox.regularizers``): the post-step operations, with
  FindParams' field names, defaults (all off) and validation (the one declaration both engines use). They act on an image in the model's pixel space (0..255 minus the mean, model
  channel order), so they need a parameterisation whose parameter IS that image: ``model_pixel_image``.
  Decision: they are not approximated for the Fourier / sigmoid / low-resolution parameterisations (their
  parameters are not pixels; blurring or clipping a spectrum is something else). There, use lucid's penalties,
  which are objectives: ``- decay * L2()`` for decay, ``- k * blur_input_each_step()`` for blur.
- ``LRSchedule(policy, params)``: ``constant`` / ``progress`` / ``progress01`` mapped onto the optimizer's
  learning rate before each step, computed from the gradient of the objective w.r.t. the parameters (for
  ``model_pixel_image``: w.r.t. the image in pixel space, DVT's own quantity). An optimizer has one learning
  rate, so with a batch the smallest of the images' rates is used; the objective value (one number for the whole
  batch) is given to every image (``progress01``). With ``torch.optim.SGD`` on ``model_pixel_image`` and no
  transforms, a step is exactly DVT's ``x += lr * grad`` (tested against ``optimize.loop``).
- ``model_pixel_image(contract, ...)``: the parameter x is the (N, 3, H, W) image in the model's pixel space;
  ``image_f()`` = ``from_model_input(x)`` (RGB in [0, 1]); after every step ``after_step`` applies the
  regularizers and clips to the valid range [0, 255] (DVT's phase 0), and it is clipped once at the start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from dvtoolbox.errors import UsageError
from dvtoolbox.models.pixel_space import InputContract, crop_to_valid_range, from_model_input, to_model_input
from dvtoolbox.optvis.param.rng import DeviceLike, randn, resolve
from dvtoolbox.regularizers.lr_policies import learning_rate, validate_lr_params
from dvtoolbox.regularizers.operations import regularize
from dvtoolbox.regularizers.settings import Regularizers

DVT_START_SD = 10.0  # DVT's start_at "mean_plus_rand": the mean plus N(0, 10 ** 2) on the 0..255 scale


@dataclass(frozen=True)
class LRSchedule:
    """A DVT learning-rate policy: ``policy`` in constant / progress / progress01 and its ``params`` (see
    ``optimize.lr_policies``; validated there)."""

    policy: str = "constant"
    params: Dict[str, float] = field(default_factory=lambda: {"lr": 1.0})

    def __post_init__(self):
        validate_lr_params(self.policy, self.params)

    @property
    def lr_policy(self) -> str:  # the names ``learning_rate`` reads
        return self.policy

    @property
    def lr_params(self) -> Dict[str, float]:
        return self.params

    def __call__(self, grads: Sequence[torch.Tensor], value: torch.Tensor) -> float:
        """The learning rate for this step: grads are the ascent gradients of the parameters, each (N, ...) with
        the batch first; value the objective (0-dim). Returns the smallest of the N per-image rates."""
        if self.policy == "constant":
            return float(self.params["lr"])
        n = grads[0].shape[0]
        if any(g.shape[0] != n for g in grads):
            raise UsageError(f"lr policy {self.policy!r} needs parameters that all start with the batch "
                             f"dimension, got shapes {[tuple(g.shape) for g in grads]}")
        flat = torch.cat([g.detach().reshape(n, -1) for g in grads], dim=1)
        obj = value.detach().to(flat.dtype).expand(n)
        lr, _ = learning_rate(self, flat, obj)
        return float(lr.min())


class ModelPixelImage:
    """``image_f`` of ``model_pixel_image``: the parameter ``x`` (N, 3, H, W) float32 is the image in the model's
    pixel space; calling it gives (N, 3, H, W) RGB on the [0, 1] scale (``from_model_input``)."""

    def __init__(self, x: torch.Tensor, contract: InputContract):
        self.x, self.contract = x, contract
        self.mean = torch.tensor(contract.mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
        with torch.no_grad():
            x.copy_(crop_to_valid_range(x, self.mean))

    def __call__(self) -> torch.Tensor:
        return from_model_input(self.x, self.contract)

    def after_step(self, step_index: int, regularizers: Optional[Regularizers]) -> None:
        """After the optimizer's step ``step_index`` (0-based): DVT's phase 6 regularizers, then the clip to
        [0, 255] (phase 0 of the next step), in place. The ascent gradient is ``-x.grad`` (the loop minimises
        -objective)."""
        with torch.no_grad():
            x = self.x
            if regularizers is not None and regularizers.active:
                grad = -self.x.grad if self.x.grad is not None else torch.zeros_like(x)
                x = regularize(x, grad, step_index, regularizers)
            self.x.copy_(crop_to_valid_range(x, self.mean))


def model_pixel_image(contract: InputContract, batch: int = 1, size: Optional[Tuple[int, int]] = None,
                      x0=None, sd: float = DVT_START_SD, generator: Optional[torch.Generator] = None,
                      device: DeviceLike = None) -> Tuple[list, ModelPixelImage]:
    """DVT's parameterisation: one parameter per pixel and channel, the image itself in the model's pixel space.

    contract: the model's ``InputContract`` (mean, channel order, default size). size: (H, W) (default the
    contract's). x0: the start, (N, 3, H, W) float mean-subtracted 0..255 in model channel order (numpy or tensor);
    default ``sd`` times standard normal values from ``generator`` (DVT's mean_plus_rand). It is clipped to the
    valid range. Returns ([x], image_f) with ``image_f.after_step`` (see ``ModelPixelImage``).
    """
    generator, device = resolve(generator, device)
    h, w = tuple(size) if size is not None else tuple(contract.size)
    if x0 is None:
        x = randn((int(batch), 3, h, w), float(sd), generator, device)
    else:
        x = torch.as_tensor(np.asarray(x0, np.float32) if not torch.is_tensor(x0) else x0,
                            dtype=torch.float32, device=device).clone()
        if x.dim() != 4 or x.shape[1] != 3:
            raise UsageError(f"x0 must be (N, 3, H, W), got shape {tuple(x.shape)}")
    x.requires_grad_(True)
    return [x], ModelPixelImage(x, contract)


def image_to_model_pixels(image01: torch.Tensor, contract: InputContract) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> pixel space, to start ``model_pixel_image`` from an image (``x0=``)."""
    return to_model_input(image01, contract).detach()
