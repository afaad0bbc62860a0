"""MACO: magnitude-constrained optimisation (Fel et al., NeurIPS 2023). Only the Fourier PHASE of the image is
optimised; its amplitude is held fixed to that of natural images, so the image keeps the photographs' spectrum
(power law, orientation) whatever the objective, and only where things are changes.

Contract: ``maco_image(w, h, batch, ...) => (params, image_f)``, ``image_f()`` (batch, 3, h, w) RGB in (0, 1):

    phase  = params[0]                         (batch, 3, h, w // 2 + 1) float32, uniform in [-pi, pi) at the start
    phase' = phase, except in the self-conjugate columns (0, and w / 2 for even w) where
             phase'[k] = (phase[k] - phase[-k mod h]) / 2 (+ pi at the DC coefficient of a channel whose mean is
             negative): the spectrum is then Hermitian there, so nothing is lost by the inverse real FFT
    z      = irfft2(amplitude * exp(i phase'), s=(h, w), norm="ortho") + m    the DECORRELATED LOGIT image
    image  = sigmoid(C z)                      C = ``color.COLOR_CORRELATION_NORMALIZED``

The mean colour m (batch, 3, 1, 1): with the shipped spectrum (``amplitude`` None) it is free but bounded in each
RGB channel's logit, ``C m = centre + half * tanh(params[1])`` with ``params[1]`` (batch, 3) starting at the
photographs' mean, where centre +- half spans the logits of the photographs' crops' lowest and highest mean RGB
per colour channel (a texture symmetric about that mean logit gives a mean RGB between its sigmoid and 0.5), and
the amplitude's DC coefficient is 0: each image picks its own mean colour inside the photographs' range (``fixed_mean=True``, or a
given ``amplitude``: m = 0 and the DC coefficient is the amplitude's, a fixed mean as the paper has it; with the
shipped spectrum that fixed mean is the photographs' average, the same cast on every image). So
``|rfft2(z, norm="ortho")| == amplitude`` at every coefficient but DC (to float32 rounding) at every step, and the
amplitude tensor itself is a constant that no step touches. ``amplitude`` defaults to
``spectrum.natural_amplitude(h, w)`` (the shipped spectrum of eight photographs, ``dvtoolbox/data/README.md``);
pass any (3, h, w // 2 + 1) array to use another.

Transparency (MACO's attribution map): every time ``image_f()`` is called with gradients on, a hook adds
``|d objective / d image|`` of that call to ``image_f.transparency`` (batch, 3, h, w); ``image_f.transparency_map()``
turns it into (batch, h, w) in [0, 1] (summed over colour channels, divided by its 99th percentile per image,
clipped). The render loop calls ``image_f()`` once per step with gradients, so the map accumulates over the steps.

Differences from the paper's code (horama, xplique), decided here: the phase is used as an angle (not standardised
first: the starting image is then a random-phase image with exactly the natural spectrum); the image is not
standardised after the inverse FFT (the amplitude is already in the photographs' units, so the image has their
contrast); the spectrum is made Hermitian in the self-conjugate columns (so the magnitude is exactly fixed there
too); the mean colour is a bounded parameter of its own instead of a fixed DC term (issue 22: a fixed mean gave
every image the same warm cast).
"""

from __future__ import annotations

import math
from typing import List, Optional

import numpy as np
import torch

from dvtoolbox.optvis.param.color import COLOR_CORRELATION_NORMALIZED, linear_decorrelate_color
from dvtoolbox.optvis.param.rng import DeviceLike, resolve

TRANSPARENCY_PERCENTILE = 99.0


def self_conjugate_columns(w: int) -> List[int]:
    """The rfft2 columns whose coefficients must be Hermitian along the rows: 0, and w / 2 for even w."""
    return [0, w // 2] if w % 2 == 0 and w > 1 else [0]


class MacoImage:
    """``image_f`` of ``maco_image``: ``__call__()`` -> (N, 3, H, W) RGB in (0, 1); ``decorrelated()`` -> z;
    ``amplitude`` (3, H, W // 2 + 1) and ``phase`` (the parameter); ``mean_colour()`` -> m (N, 3) in z units;
    ``transparency`` and ``transparency_map()``. ``colour`` (N, 3) is the mean colour's parameter and
    ``colour_range`` its (centre, half) (each (3,)), or both None for a fixed mean."""

    def __init__(self, phase: torch.Tensor, amplitude: torch.Tensor, dc_offset: torch.Tensor, h: int, w: int,
                 colour: Optional[torch.Tensor] = None, colour_range: Optional[tuple] = None):
        self.phase, self.amplitude, self.h, self.w = phase, amplitude, h, w
        self.colour, self.colour_range = colour, colour_range
        inverse = np.linalg.inv(COLOR_CORRELATION_NORMALIZED.astype(np.float64))
        self._to_decorrelated = torch.tensor(inverse, dtype=torch.float32, device=phase.device)
        self._offset = torch.zeros(amplitude.shape, device=phase.device)   # pi at DC where the mean is negative
        self._offset[:, 0, 0] = dc_offset.view(3)
        self._cols = torch.tensor(self_conjugate_columns(w), device=phase.device)
        self._neg_rows = (-torch.arange(h, device=phase.device)) % h
        self.transparency = torch.zeros(phase.shape[:2] + (h, w), device=phase.device)

    def effective_phase(self) -> torch.Tensor:
        """phase' of the module docstring, (N, 3, H, W // 2 + 1)."""
        sym = self.phase[..., self._cols]                                  # (N, 3, H, k)
        anti = 0.5 * (sym - sym[..., self._neg_rows, :])
        return self.phase.index_copy(3, self._cols, anti) + self._offset

    def mean_logit(self) -> Optional[torch.Tensor]:
        """C m: (N, 3) float32, the free mean of each RGB channel's logit, or None for a fixed mean."""
        if self.colour is None:
            return None
        centre, half = self.colour_range
        return centre + half * torch.tanh(self.colour)

    def mean_colour(self) -> Optional[torch.Tensor]:
        """m: (N, 3) float32, the free mean of z per decorrelated channel (``C^-1`` of ``mean_logit``), or None."""
        logit = self.mean_logit()
        return None if logit is None else logit @ self._to_decorrelated.t()

    def decorrelated(self) -> torch.Tensor:
        """z: (N, 3, H, W) float32, the decorrelated logit image."""
        spectrum = torch.polar(self.amplitude.expand_as(self.phase), self.effective_phase())
        z = torch.fft.irfft2(spectrum, s=(self.h, self.w), norm="ortho")
        mean = self.mean_colour()
        return z if mean is None else z + mean[:, :, None, None]

    def _accumulate(self, grad: torch.Tensor) -> None:
        self.transparency += grad.detach().abs()

    def __call__(self) -> torch.Tensor:
        image = torch.sigmoid(linear_decorrelate_color(self.decorrelated()))
        if image.requires_grad:
            image.register_hook(self._accumulate)
        return image

    def transparency_map(self) -> np.ndarray:
        """(N, H, W) float32 in [0, 1]: the accumulated |gradient| summed over colour channels, divided by its
        99th percentile per image and clipped (zeros where nothing was accumulated)."""
        total = self.transparency.sum(dim=1).detach().cpu().numpy().astype(np.float64)
        out = np.zeros_like(total)
        for i, t in enumerate(total):
            top = np.percentile(t, TRANSPARENCY_PERCENTILE)
            if top > 0:
                out[i] = np.clip(t / top, 0.0, 1.0)
        return out.astype(np.float32)


def maco_image(w: int, h: Optional[int] = None, batch: int = 1, amplitude: Optional[np.ndarray] = None,
               dc_sign: Optional[np.ndarray] = None, generator: Optional[torch.Generator] = None,
               device: DeviceLike = None, fixed_mean: bool = False):
    """A batch of ``batch`` MACO images of width ``w`` and height ``h`` (default ``w``): ``([phase, colour],
    MacoImage)`` with the shipped spectrum's free mean colour, ``([phase], MacoImage)`` with a fixed one.

    amplitude: (3, h, w // 2 + 1) fixed amplitude of z's orthonormal rfft2 (default: the shipped natural spectrum,
    ``spectrum.natural_amplitude``, its mean colour free in the photographs' range unless ``fixed_mean``, then fixed
    at their average with its DC sign); dc_sign: (3,) +-1, the sign of each channel's DC coefficient (default +1 with
    a given amplitude). generator, device: see ``rng.py``; the phase is uniform in [-pi, pi).
    """
    h = w if h is None else h
    h, w, batch = int(h), int(w), int(batch)
    if min(h, w, batch) < 1:
        raise ValueError(f"maco_image needs w, h and batch >= 1, got w={w}, h={h}, batch={batch}")
    generator, device = resolve(generator, device)
    free_mean = amplitude is None and not fixed_mean
    if amplitude is None:
        from dvtoolbox.optvis.spectrum import natural_amplitude

        amplitude, default_sign = natural_amplitude(h, w)
        dc_sign = default_sign if dc_sign is None else dc_sign
        if free_mean:
            amplitude[:, 0, 0] = 0.0
    amplitude = np.asarray(amplitude, dtype=np.float64)
    if amplitude.shape != (3, h, w // 2 + 1) or not np.all(np.isfinite(amplitude)) or np.any(amplitude < 0):
        raise ValueError(f"amplitude must be a finite, non-negative (3, {h}, {w // 2 + 1}) array, got shape "
                         f"{amplitude.shape}")
    dc_sign = np.ones(3) if dc_sign is None else np.asarray(dc_sign, dtype=np.float64)
    phase = (torch.rand((batch, 3, h, w // 2 + 1), generator=generator, device=device, dtype=torch.float32)
             * (2 * math.pi) - math.pi).requires_grad_(True)
    amplitude_t = torch.tensor(amplitude, dtype=torch.float32, device=device)
    dc_offset = torch.tensor(np.where(dc_sign < 0, math.pi, 0.0), dtype=torch.float32, device=device).view(3, 1, 1)
    if not free_mean:
        return [phase], MacoImage(phase, amplitude_t, dc_offset, h, w)
    colour, colour_range = free_colour(batch, device)
    return [phase, colour], MacoImage(phase, amplitude_t, dc_offset, h, w, colour, colour_range)


def free_colour(batch: int, device: DeviceLike):
    """The mean colour's parameter (batch, 3), at the photographs' average mean logit, and its (centre, half) range
    (each (3,) float32, RGB logits): the shipped spectrum's ``logit_low`` .. ``logit_high``."""
    from dvtoolbox.optvis.spectrum import load_natural_spectrum

    spectrum = load_natural_spectrum()
    low, high = spectrum["logit_low"], spectrum["logit_high"]
    mean = COLOR_CORRELATION_NORMALIZED.astype(np.float64) @ spectrum["mean"]
    centre, half = 0.5 * (low + high), 0.5 * (high - low)
    start = np.arctanh((mean - centre) / half)
    colour = torch.tensor(np.tile(start, (batch, 1)), dtype=torch.float32, device=device).requires_grad_(True)
    as_tensor = lambda a: torch.tensor(a, dtype=torch.float32, device=device)  # noqa: E731
    return colour, (as_tensor(centre), as_tensor(half))
