"""MACO: magnitude-constrained optimisation (Fel et al., NeurIPS 2023). Only the Fourier PHASE of the image is
optimised; its amplitude is held fixed to that of natural images, so the image keeps the photographs' spectrum
(power law, orientation) whatever the objective, and only where things are changes.

Contract: ``maco_image(w, h, batch, ...) => (params, image_f)``, ``image_f()`` (batch, 3, h, w) RGB in (0, 1):

    phase  = params[0]                         (batch, 3, h, w // 2 + 1) float32, uniform in [-pi, pi) at the start
    phase' = phase, except in the self-conjugate columns (0, and w / 2 for even w) where
             phase'[k] = (phase[k] - phase[-k mod h]) / 2 (+ pi at the DC coefficient of a channel whose mean is
             negative): the spectrum is then Hermitian there, so nothing is lost by the inverse real FFT
    z      = irfft2(amplitude * exp(i phase'), s=(h, w), norm="ortho")    the DECORRELATED LOGIT image
    image  = sigmoid(C z)                      C = ``color.COLOR_CORRELATION_NORMALIZED``

so ``|rfft2(z, norm="ortho")| == amplitude`` at every coefficient (to float32 rounding) at every step, and the
amplitude tensor itself is a constant that no step touches. ``amplitude`` defaults to
``spectrum.natural_amplitude(h, w)`` (the shipped spectrum of five photographs, ``dvtoolbox/data/README.md``); pass
any (3, h, w // 2 + 1) array to use another.

Transparency (MACO's attribution map): every time ``image_f()`` is called with gradients on, a hook adds
``|d objective / d image|`` of that call to ``image_f.transparency`` (batch, 3, h, w); ``image_f.transparency_map()``
turns it into (batch, h, w) in [0, 1] (summed over colour channels, divided by its 99th percentile per image,
clipped). The render loop calls ``image_f()`` once per step with gradients, so the map accumulates over the steps.

Differences from the paper's code (horama, xplique), decided here: the phase is used as an angle (not standardised
first: the starting image is then a random-phase image with exactly the natural spectrum); the image is not
standardised after the inverse FFT (the amplitude is already in the photographs' units, so the image has their
contrast); the spectrum is made Hermitian in the self-conjugate columns (so the magnitude is exactly fixed there
too) and the DC term carries the photographs' mean colour with its sign.
"""

from __future__ import annotations

import math
from typing import List, Optional

import numpy as np
import torch

from dvtoolbox.optvis.param.color import linear_decorrelate_color
from dvtoolbox.optvis.param.rng import DeviceLike, resolve

TRANSPARENCY_PERCENTILE = 99.0


def self_conjugate_columns(w: int) -> List[int]:
    """The rfft2 columns whose coefficients must be Hermitian along the rows: 0, and w / 2 for even w."""
    return [0, w // 2] if w % 2 == 0 and w > 1 else [0]


class MacoImage:
    """``image_f`` of ``maco_image``: ``__call__()`` -> (N, 3, H, W) RGB in (0, 1); ``decorrelated()`` -> z;
    ``amplitude`` (3, H, W // 2 + 1) and ``phase`` (the parameter); ``transparency`` and ``transparency_map()``."""

    def __init__(self, phase: torch.Tensor, amplitude: torch.Tensor, dc_offset: torch.Tensor, h: int, w: int):
        self.phase, self.amplitude, self.h, self.w = phase, amplitude, h, w
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

    def decorrelated(self) -> torch.Tensor:
        """z: (N, 3, H, W) float32, the decorrelated logit image."""
        spectrum = torch.polar(self.amplitude.expand_as(self.phase), self.effective_phase())
        return torch.fft.irfft2(spectrum, s=(self.h, self.w), norm="ortho")

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
               device: DeviceLike = None):
    """A batch of ``batch`` MACO images of width ``w`` and height ``h`` (default ``w``): ``([phase], MacoImage)``.

    amplitude: (3, h, w // 2 + 1) fixed amplitude of z's orthonormal rfft2 (default: the shipped natural spectrum,
    ``spectrum.natural_amplitude``, with its DC sign); dc_sign: (3,) +-1, the sign of each channel's DC coefficient
    (default +1 with a given amplitude). generator, device: see ``rng.py``; the phase is uniform in [-pi, pi).
    """
    h = w if h is None else h
    h, w, batch = int(h), int(w), int(batch)
    if min(h, w, batch) < 1:
        raise ValueError(f"maco_image needs w, h and batch >= 1, got w={w}, h={h}, batch={batch}")
    generator, device = resolve(generator, device)
    if amplitude is None:
        from dvtoolbox.optvis.spectrum import natural_amplitude

        amplitude, default_sign = natural_amplitude(h, w)
        dc_sign = default_sign if dc_sign is None else dc_sign
    amplitude = np.asarray(amplitude, dtype=np.float64)
    if amplitude.shape != (3, h, w // 2 + 1) or not np.all(np.isfinite(amplitude)) or np.any(amplitude < 0):
        raise ValueError(f"amplitude must be a finite, non-negative (3, {h}, {w // 2 + 1}) array, got shape "
                         f"{amplitude.shape}")
    dc_sign = np.ones(3) if dc_sign is None else np.asarray(dc_sign, dtype=np.float64)
    phase = (torch.rand((batch, 3, h, w // 2 + 1), generator=generator, device=device, dtype=torch.float32)
             * (2 * math.pi) - math.pi).requires_grad_(True)
    amplitude_t = torch.tensor(amplitude, dtype=torch.float32, device=device)
    dc_offset = torch.tensor(np.where(dc_sign < 0, math.pi, 0.0), dtype=torch.float32, device=device).view(3, 1, 1)
    return [phase], MacoImage(phase, amplitude_t, dc_offset, h, w)
