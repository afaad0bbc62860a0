"""Backgrounds for transparent (RGBA) feature visualisation, as lucid's alpha notebook builds them.

Contract: ``make_bg_func(config) => bg_func``; ``bg_func(w, generator=None, device=None) => Background`` with
``params`` (the tensors to optimise, drawn now from ``generator`` / ``param_defaults``, see ``param/rng.py``) and
``draw(generator) -> (1, 3, w, w)`` RGB in (0, 1), called once per optimisation step (a fresh noise sample and a
fresh random offset each call, from ``generator``).

A background is ``(1 - noise_ratio) * var_img + noise_ratio * noise``:

- ``var_img`` (optimisable), by ``var_mode``:
  - ``"image"``: a Fourier image ``get_image(w + var_image_jitter, decorrelate=decorrelate)`` cropped back to
    (w, w) at a random offset in 0..var_image_jitter on each axis (lucid's ``jitter(var_image_jitter)``); with
    ``var_image_jitter`` 0 the whole image, always at the same place ("image full"), with 128 a random window of a
    larger image ("image random offset");
  - ``"color"``: one colour, pixel (3, 3) of a 5 x 5 Fourier image ``get_image(5, decorrelate=decorrelate)``,
    spread over the (w, w) background;
- ``noise`` (not optimisable, redrawn each step): ``image_sample((1, 3, w, w), sd=base_sd * 20 ** (1 -
  decay_power), decay_power=decay_power, decorrelate=decorrelate)``.

A term whose weight is 0 is not built (lucid built it and multiplied it by 0: same images, fewer parameters).
Whether a background is ADVERSARIAL (optimised against the objective) or ALLIED (with it) is not a property of
the background but of the objective built around it (``alpha.py``).

``TEST_BACKGROUNDS``: the seven backgrounds of the notebook's ``test()``, in its order, with their adversarial flag;
``EXPERIMENT2_BACKGROUNDS``: the eight of its ``bg_list``; ``CLI_BACKGROUNDS``: the names a command line offers.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch

from dvtoolbox.errors import UsageError
from dvtoolbox.optvis.param.images import get_image, image_sample
from dvtoolbox.optvis.param.rng import DeviceLike, resolve
from dvtoolbox.optvis.transforms import jitter

VAR_MODES = ("image", "color")


@dataclass
class Background:
    """One background: ``params`` to optimise (maybe none) and ``draw(generator) -> (1, 3, w, w)`` in (0, 1)."""

    params: List[torch.Tensor]
    draw: Callable[[Optional[torch.Generator]], torch.Tensor]


@dataclass(frozen=True)
class BgFunc:
    """The configuration of ``make_bg_func``; calling it builds a ``Background`` (see the module docstring)."""

    noise_ratio: float = 0.5
    decay_power: float = 1.5
    base_sd: float = 0.8
    decorrelate: bool = True
    var_mode: str = "image"
    var_image_jitter: int = 0

    def __post_init__(self):
        if not isinstance(self.noise_ratio, numbers.Real) or not 0.0 <= self.noise_ratio <= 1.0:
            raise UsageError(f"noise_ratio must be in [0, 1], got {self.noise_ratio!r}")
        if self.var_mode not in VAR_MODES:
            raise UsageError(f"var_mode must be one of {VAR_MODES}, got {self.var_mode!r}")
        if not isinstance(self.var_image_jitter, numbers.Integral) or self.var_image_jitter < 0:
            raise UsageError(f"var_image_jitter must be an integer >= 0, got {self.var_image_jitter!r}")
        if not self.base_sd >= 0:
            raise UsageError(f"base_sd must be >= 0, got {self.base_sd!r}")

    @property
    def noise_sd(self) -> float:
        """The sd of the noise's Fourier coefficients: ``base_sd * 20 ** (1 - decay_power)``."""
        return float(self.base_sd) * 20.0 ** (1.0 - float(self.decay_power))

    def __call__(self, w: int, generator: Optional[torch.Generator] = None,
                 device: DeviceLike = None) -> Background:
        w = int(w)
        generator, device = resolve(generator, device)
        var_weight, noise_weight = 1.0 - float(self.noise_ratio), float(self.noise_ratio)
        params: List[torch.Tensor] = []
        var_f = None
        if var_weight:
            if self.var_mode == "image":
                params, var_f = get_image(w + self.var_image_jitter, decorrelate=self.decorrelate,
                                          generator=generator, device=device)
            else:
                params, var_f = get_image(5, decorrelate=self.decorrelate, generator=generator, device=device)
        crop = jitter(self.var_image_jitter) if self.var_mode == "image" and self.var_image_jitter else None

        def draw(step_generator: Optional[torch.Generator] = None) -> torch.Tensor:
            out = None
            if var_f is not None:
                var = var_f()
                if self.var_mode == "color":
                    var = var[:, :, 3:4, 3:4].expand(1, 3, w, w)
                elif crop is not None:
                    var = crop(var, step_generator)
                out = var_weight * var
            if noise_weight:
                noise = image_sample((1, 3, w, w), sd=self.noise_sd, decay_power=self.decay_power,
                                     decorrelate=self.decorrelate, generator=step_generator, device=device)
                out = noise_weight * noise if out is None else out + noise_weight * noise
            return out

        return Background(list(params), draw)

    def describe(self) -> str:
        if self.noise_ratio == 1.0:
            return f"noise(sd={self.noise_sd:.3g}, decay_power={self.decay_power})"
        what = ("color" if self.var_mode == "color" else
                f"image(offset 0..{self.var_image_jitter})" if self.var_image_jitter else "image(full)")
        return what if self.noise_ratio == 0 else f"{1 - self.noise_ratio:g} {what} + {self.noise_ratio:g} noise"


def make_bg_func(noise_ratio: float = 0.5, decay_power: float = 1.5, base_sd: float = 0.8, decorrelate: bool = True,
                 var_mode: str = "image", var_image_jitter: int = 0) -> BgFunc:
    """The notebook's ``make_bg_func`` with its defaults: ``bg_func(w) -> Background`` (module docstring)."""
    return BgFunc(noise_ratio, decay_power, base_sd, decorrelate, var_mode, var_image_jitter)


# The notebook's test(): (name, adversarial, background), in its order.
TEST_BACKGROUNDS: Tuple[Tuple[str, bool, BgFunc], ...] = (
    ("adversarial image full", True, make_bg_func(0.0, 1.5, 0.3, True, "image", 0)),
    ("adversarial image random offset", True, make_bg_func(0.0, 1.5, 0.3, True, "image", 128)),
    ("adversarial color", True, make_bg_func(0.0, 1.5, 0.3, True, "color")),
    ("noise", True, make_bg_func(1.0, 2, 0.1, True, "color")),
    ("allied color", False, make_bg_func(0.0, 1.5, 0.3, True, "color")),
    ("allied image random offset", False, make_bg_func(0.0, 1.5, 0.3, True, "image", 128)),
    ("allied image full", False, make_bg_func(0.0, 1.5, 0.3, True, "image", 0)),
)

# The notebook's bg_list for experiment 2: (adversarial, background), in its order.
EXPERIMENT2_BACKGROUNDS: Tuple[Tuple[bool, BgFunc], ...] = (
    (True, make_bg_func(0.0, 1.5, 0.3, True, "image", 2)),
    (True, make_bg_func(0.0, 1.5, 0.3, True, "image", 128)),
    (True, make_bg_func(0.0, 1.5, 0.3, True, "color")),
    (True, make_bg_func(1.0, 2, 0.4, True)),
    (True, make_bg_func(1.0, 2, 0.1, True)),
    (False, make_bg_func(0.0, 1.5, 0.3, True, "color")),
    (False, make_bg_func(0.0, 1.5, 0.3, True, "image", 128)),
    (False, make_bg_func(0.0, 1.5, 0.3, True, "image", 2)),
)

# Command-line names -> background ("none": no background element; RGBA over FeatureViz's random backgrounds).
CLI_BACKGROUNDS: Dict[str, Optional[BgFunc]] = {
    "none": None,
    "noise": TEST_BACKGROUNDS[3][2],
    "image": TEST_BACKGROUNDS[0][2],
    "offset-image": TEST_BACKGROUNDS[1][2],
    "color": TEST_BACKGROUNDS[2][2],
}


def background_by_name(name: str) -> Optional[BgFunc]:
    """``CLI_BACKGROUNDS[name]``, or a UsageError listing the names."""
    if name not in CLI_BACKGROUNDS:
        raise UsageError(f"background must be one of {', '.join(CLI_BACKGROUNDS)}, got {name!r}")
    return CLI_BACKGROUNDS[name]
