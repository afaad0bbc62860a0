"""The image parameterisation most visualisations use, and random images from the same prior.

``get_image(w, ...) => (params, image_f)``: ``image_f()`` is (batch, 3, h, w) RGB in (0, 1), or (batch, 4, h, w)
RGBA with ``alpha`` (the fourth channel is ``sigmoid`` of its own raw channel, never colour-decorrelated).
``image_sample(shape, ...) => image``: one draw of the same construction, without parameters to optimize.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from dvtoolbox.optvis.param.color import linear_decorrelate_color
from dvtoolbox.optvis.param.rng import DeviceLike
from dvtoolbox.optvis.param.spatial import ParamResult, fft_image, pixel_image


def _rgba(raw: torch.Tensor, decorrelate: bool) -> torch.Tensor:
    """Unconstrained (N, 3 or 4, H, W) -> RGB(A) in (0, 1): colour matrix on the first 3 channels if asked, then
    a sigmoid on every channel."""
    rgb = raw[:, :3]
    rgb = torch.sigmoid(linear_decorrelate_color(rgb) if decorrelate else rgb)
    if raw.shape[1] == 3:
        return rgb
    return torch.cat([rgb, torch.sigmoid(raw[:, 3:])], dim=1)


def get_image(w: int, h: Optional[int] = None, batch: int = 1, fft: bool = True, decorrelate: bool = True,
              sd: Optional[float] = None, decay_power: float = 1.0, alpha: bool = False,
              generator: Optional[torch.Generator] = None, device: DeviceLike = None) -> ParamResult:
    """An optimizable batch of ``batch`` images of width ``w`` and height ``h`` (default ``w``).

    fft: Fourier parameterisation (``spatial.fft_image`` with ``decay_power``) or one parameter per pixel
    (``spatial.pixel_image``; ``decay_power`` unused). decorrelate: through the ImageNet colour matrix
    (``color.py``). sd: standard deviation of the initial parameters (0.01). alpha: a fourth, transparency channel.
    generator, device: see ``rng.py``. Returns (params, image_f), image_f() (batch, 3|4, h, w) in (0, 1).
    """
    h = w if h is None else h
    shape = (int(batch), 4 if alpha else 3, int(h), int(w))
    if fft:
        params, raw_f = fft_image(shape, sd=sd, decay_power=decay_power, generator=generator, device=device)
    else:
        params, raw_f = pixel_image(shape, sd=sd, generator=generator, device=device)
    return params, lambda: _rgba(raw_f(), decorrelate)


def image_sample(shape: Sequence[int], sd: Optional[float] = None, decay_power: float = 1.0,
                 decorrelate: bool = True, generator: Optional[torch.Generator] = None,
                 device: DeviceLike = None) -> torch.Tensor:
    """A random (N, 3, H, W) RGB image in (0, 1) from the Fourier prior: the image ``get_image`` starts from with
    this ``sd`` (lucid's ``image_sample``; sd 0.01 gives a nearly uniform grey, lucid's backgrounds use 0.2-0.5).
    ``shape`` is (N, 3, H, W). No gradient."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 4 or shape[1] != 3:
        raise ValueError(f"image_sample needs shape (N, 3, H, W), got {shape!r}")
    _, raw_f = fft_image(shape, sd=sd, decay_power=decay_power, generator=generator, device=device)
    with torch.no_grad():
        return _rgba(raw_f(), decorrelate).detach()
