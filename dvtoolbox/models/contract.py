"""The input contract a model declares, so that the optimizer never special-cases a model.

Every model in dvtoolbox takes the same kind of input: ``x`` of shape (N, 3, H, W), float32, the image minus the
model's mean on the 0..255 scale, channels in the model's own order. This is the pixel space of the original
Caffe toolbox, so ``--lr-params``, ``--decay``, blur radii in pixels and the [0, 255] clip keep their meaning on
every model. A model that wants another scale (a torchvision model that expects ImageNet-normalised RGB in 0..1)
rescales inside its own forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple

import numpy as np

CHANNEL_ORDERS = ("RGB", "BGR")


@dataclass(frozen=True)
class InputContract:
    """What a model expects.

    size: (H, W) of the input.
    channel_order: "RGB" or "BGR", the order of the 3 input channels.
    mean: per-channel mean on the 0..255 scale in the model's channel order (3 floats).
    label_layers: layers whose channels are the classes of ``labels`` (e.g. ("fc8", "prob")).
    labels: class names, index = channel, or None.
    """

    size: Tuple[int, int]
    channel_order: str
    mean: Tuple[float, float, float]
    label_layers: Tuple[str, ...] = ()
    labels: Optional[Tuple[str, ...]] = field(default=None, repr=False)

    def __post_init__(self):
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {self.channel_order!r}")
        if len(self.size) != 2 or min(self.size) < 1:
            raise ValueError(f"size must be (H, W) with H, W >= 1, got {self.size!r}")
        if len(self.mean) != 3:
            raise ValueError(f"mean must have 3 values (one per channel), got {self.mean!r}")

    @property
    def channel_swap_to_rgb(self) -> Tuple[int, int, int]:
        """Permutation that turns the model's channel order into RGB (the original's --channel-swap-to-rgb)."""
        return (0, 1, 2) if self.channel_order == "RGB" else (2, 1, 0)

    def mean_image(self, size: Optional[Sequence[int]] = None) -> np.ndarray:
        """The per-channel mean broadcast to an image: (3, H, W) float64 (the optimizer's image state is float64,
        as the original's numpy arrays were), 0..255, model channel order."""
        h, w = size if size is not None else self.size
        return np.broadcast_to(np.asarray(self.mean, np.float64)[:, None, None], (3, h, w)).copy()
