"""Random, differentiable augmentations applied to the image before each forward pass (lucid's transforms).

Contract: ``(config) => (x, generator) => (stochastic transformed x)``. ``x`` is (N, C, H, W) float on any device
(an RGB(A) image in [0, 1] in the render loop); ``generator`` is a ``torch.Generator`` on x's device (None: torch's
global CPU generator). Each random transform first SAMPLES its parameters (``get_params``), once per call and the
same for the whole batch, then calls a pure deterministic KERNEL (``pad_image``, ``crop``, ``scale_image``,
``rotate_image``, ``composite_alpha``) that returns a new tensor (``crop``: a view), never modifies its input,
and is differentiable in x. These transforms change what the model sees, never the optimized image; DVT's post-step regularizers
(decay, blur, clips in ``dvtoolbox.regularizers.operations``) change the image itself and are a different thing.

Kernels, exactly:
- ``pad_image``: ``torch.nn.functional.pad`` on H and W ("constant" with a value, "reflect" = numpy's 'reflect',
  "replicate" = numpy's 'edge').
- ``crop``: ``x[..., top:top + height, left:left + width]``. ``jitter(d)`` is lucid's: a random crop of
  (H - d, W - d) at offsets uniform in 0..d.
- ``scale_image``: bilinear resize to (floor(scale * H), floor(scale * W)) with half-pixel centres and clamped edges
  (``scipy.ndimage.zoom(order=1, mode="nearest", grid_mode=True)``).
- ``rotate_image``: counter-clockwise by an angle in degrees about the image centre ((H - 1) / 2, (W - 1) / 2),
  bilinear, zero outside (``scipy.ndimage.affine_transform(order=1, mode="grid-constant")``), same size.
- ``composite_alpha``: ``rgb * a + background * (1 - a)``.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

from dvtoolbox.optvis.param.images import image_sample
from dvtoolbox.optvis.param.spatial import resize_bilinear

PAD_MODES = ("constant", "reflect", "replicate")
ANGLE_UNITS = ("degrees", "radians")


# ---------------------------------------------------------------------------------------------------- kernels


def pad_image(x: torch.Tensor, width: int, mode: str = "reflect", value: float = 0.5) -> torch.Tensor:
    """Pad H and W of (N, C, H, W) by ``width`` on every side: (N, C, H + 2w, W + 2w)."""
    mode = mode.lower()
    if mode not in PAD_MODES:
        raise ValueError(f"pad mode must be one of {PAD_MODES}, got {mode!r}")
    width = int(width)
    if width == 0:
        return x.clone()
    if mode == "constant":
        return F.pad(x, [width] * 4, mode="constant", value=float(value))
    return F.pad(x, [width] * 4, mode=mode)


def crop(x: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """``x[..., top:top + height, left:left + width]`` of (N, C, H, W), which must lie inside the image."""
    h, w = x.shape[-2:]
    if top < 0 or left < 0 or top + height > h or left + width > w or height < 1 or width < 1:
        raise ValueError(f"crop (top={top}, left={left}, height={height}, width={width}) leaves the {h}x{w} image")
    return x[..., top:top + height, left:left + width]


def scaled_size(size: Sequence[int], scale: float) -> tuple:
    """(floor(scale * H), floor(scale * W)), at least 1 (a 1e-6 slack absorbs 0.3 * 10 = 2.9999...)."""
    return tuple(max(1, int(math.floor(float(scale) * s + 1e-6))) for s in size)


def scale_image(x: torch.Tensor, scale: float) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, floor(scale H), floor(scale W)), bilinear (see the module docstring)."""
    if not float(scale) > 0:
        raise ValueError(f"scale must be > 0, got {scale!r}")
    out = resize_bilinear(x, scaled_size(x.shape[-2:], scale))
    return out.clone() if out is x else out


def _cos_sin(angle_degrees: float):
    """cos and sin in float64, values within 1e-12 of 0 set to 0 (so 90-degree turns are exact)."""
    rad = math.radians(float(angle_degrees))
    c, s = math.cos(rad), math.sin(rad)
    return (0.0 if abs(c) < 1e-12 else c), (0.0 if abs(s) < 1e-12 else s)


def rotate_image(x: torch.Tensor, angle_degrees: float) -> torch.Tensor:
    """Rotate (N, C, H, W) counter-clockwise (as displayed, row 0 on top) by ``angle_degrees`` about the centre;
    bilinear, zeros outside; same shape.

    Output pixel (row', col') samples input (row, col) with, in pixels from the centre (u = col - (W-1)/2,
    v = row - (H-1)/2): u = c u' - s v', v = s u' + c v'. ``affine_grid`` works in coordinates normalised per
    axis, so the off-diagonal terms carry the aspect ratio.
    """
    n, _, h, w = x.shape
    c, s = _cos_sin(angle_degrees)
    theta = torch.tensor([[c, -s * h / w, 0.0], [s * w / h, c, 0.0]], dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta.expand(n, 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def composite_alpha(rgba: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """(N, 4, H, W) RGBA over an (N, 3, H, W) background: ``rgb * a + background * (1 - a)``, (N, 3, H, W)."""
    if rgba.shape[1] != 4:
        raise ValueError(f"composite_alpha needs (N, 4, H, W) RGBA, got shape {tuple(rgba.shape)}")
    rgb, a = rgba[:, :3], rgba[:, 3:4]
    return rgb * a + background * (1 - a)


# ---------------------------------------------------------------------------------------------------- sampling


def _check_generator(x: torch.Tensor, generator: Optional[torch.Generator]) -> None:
    if generator is not None and generator.device.type != x.device.type:
        raise ValueError(f"the generator lives on {generator.device} but the image on {x.device}; "
                         f"make it with torch.Generator(device={str(x.device)!r})")


def _randint(high: int, generator: Optional[torch.Generator]) -> int:
    """One integer uniform in [0, high) from ``generator`` (torch's global CPU generator when None)."""
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(high, (1,), generator=generator, device=device).item())


def _numbers(values, what: str) -> List[float]:
    values = list(values)
    if not values or not all(isinstance(v, numbers.Real) for v in values):
        raise ValueError(f"{what} must be a non-empty sequence of numbers, got {values!r}")
    return values


class Transform:
    """Base: ``__call__(x, generator=None)`` = ``kernel(x, **get_params(x, generator))``."""

    def get_params(self, x: torch.Tensor, generator: Optional[torch.Generator]) -> Dict:
        return {}

    def kernel(self, x: torch.Tensor, **params) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        _check_generator(x, generator)
        return self.kernel(x, **self.get_params(x, generator))


class Pad(Transform):
    def __init__(self, width: int, mode: str = "reflect", value: float = 0.5):
        if int(width) < 0:
            raise ValueError(f"pad width must be >= 0, got {width!r}")
        if mode.lower() not in PAD_MODES:
            raise ValueError(f"pad mode must be one of {PAD_MODES}, got {mode!r}")
        self.width, self.mode, self.value = int(width), mode.lower(), float(value)

    def kernel(self, x, **_):
        return pad_image(x, self.width, self.mode, self.value)

    def __repr__(self):
        return f"pad({self.width}, mode={self.mode!r}, value={self.value})"


class Jitter(Transform):
    def __init__(self, d: int):
        if int(d) < 1:
            raise ValueError(f"jitter d must be >= 1, got {d!r}")
        self.d = int(d)

    def get_params(self, x, generator):
        h, w = x.shape[-2:]
        if self.d >= min(h, w):
            raise ValueError(f"jitter({self.d}) needs an image larger than {self.d} pixels, got {h}x{w}")
        return {"top": _randint(self.d + 1, generator), "left": _randint(self.d + 1, generator)}

    def kernel(self, x, top, left):
        h, w = x.shape[-2:]
        return crop(x, top, left, h - self.d, w - self.d)

    def __repr__(self):
        return f"jitter({self.d})"


class RandomScale(Transform):
    def __init__(self, scales: Sequence[float]):
        self.scales = _numbers(scales, "scales")
        bad = [s for s in self.scales if not s > 0]
        if bad:
            raise ValueError(f"scales must be > 0, got {bad!r}")

    def get_params(self, x, generator):
        return {"scale": self.scales[_randint(len(self.scales), generator)]}

    def kernel(self, x, scale):
        return scale_image(x, scale)

    def __repr__(self):
        return f"random_scale({self.scales})"


class RandomRotate(Transform):
    def __init__(self, angles: Sequence[float], units: str = "degrees"):
        units = {"rad": "radians", "rads": "radians", "deg": "degrees"}.get(units.lower(), units.lower())
        if units not in ANGLE_UNITS:
            raise ValueError(f"units must be one of {ANGLE_UNITS}, got {units!r}")
        self.angles, self.units = _numbers(angles, "angles"), units

    def get_params(self, x, generator):
        angle = self.angles[_randint(len(self.angles), generator)]
        return {"angle_degrees": math.degrees(angle) if self.units == "radians" else float(angle)}

    def kernel(self, x, angle_degrees):
        return rotate_image(x, angle_degrees)

    def __repr__(self):
        return f"random_rotate({self.angles}, units={self.units!r})"


class CollapseAlphaRandom(Transform):
    """RGBA -> RGB over a random background ``image_sample(sd=sd, decay_power=decay_power)`` drawn per call, so
    the only way to keep a feature visible is to make it opaque (lucid's ``collapse_alpha_random``). A 3-channel
    input is returned unchanged."""

    def __init__(self, sd: float = 0.5, decay_power: float = 1.0):
        self.sd, self.decay_power = float(sd), float(decay_power)

    def get_params(self, x, generator):
        if x.shape[1] != 4:
            return {"background": None}
        shape = (x.shape[0], 3) + tuple(x.shape[-2:])
        return {"background": image_sample(shape, sd=self.sd, decay_power=self.decay_power, generator=generator,
                                           device=x.device).to(x.dtype)}

    def kernel(self, x, background):
        return x if background is None else composite_alpha(x, background)

    def __repr__(self):
        return f"collapse_alpha_random(sd={self.sd}, decay_power={self.decay_power})"


class Compose(Transform):
    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, x, generator=None):
        for transform in self.transforms:
            x = transform(x, generator)
        return x

    def __repr__(self):
        return f"compose({self.transforms})"


# ---------------------------------------------------------------------------------------------------- factories


def pad(width: int, mode: str = "reflect", value: float = 0.5) -> Pad:
    """Pad by ``width`` pixels ("constant" with ``value``, "reflect" or "replicate"); lucid's default mode."""
    return Pad(width, mode, value)


def jitter(d: int) -> Jitter:
    """A random crop of (H - d, W - d) at offsets uniform in 0..d (both axes)."""
    return Jitter(d)


def random_scale(scales: Sequence[float]) -> RandomScale:
    """Resize by a factor drawn uniformly from ``scales``."""
    return RandomScale(scales)


def random_rotate(angles: Sequence[float], units: str = "degrees") -> RandomRotate:
    """Rotate counter-clockwise by an angle drawn uniformly from ``angles`` ("degrees" or "radians")."""
    return RandomRotate(angles, units)


def collapse_alpha_random(sd: float = 0.5, decay_power: float = 1.0) -> CollapseAlphaRandom:
    """RGBA over a fresh random background each call; RGB unchanged."""
    return CollapseAlphaRandom(sd, decay_power)


def compose(transforms: Sequence[Callable]) -> Compose:
    """Apply ``transforms`` in order, each with the same generator."""
    return Compose(transforms)


def standard_transforms() -> List[Transform]:
    """lucid's standard chain (a new list each call): pad 12 with grey 0.5, jitter 8, scale by 0.9 .. 1.1 in
    steps of 0.02, rotate by -10 .. 10 degrees (0 six times more likely), jitter 4."""
    return [
        pad(12, mode="constant", value=0.5),
        jitter(8),
        random_scale([1 + (i - 5) / 50.0 for i in range(11)]),
        random_rotate(list(range(-10, 11)) + 5 * [0]),
        jitter(4),
    ]


def strong_transforms() -> List[Transform]:
    """A wider chain than lucid's (a new list each call): pad 16 with grey 0.5, jitter 16, scale by 0.75 .. 1.25 in
    steps of 0.05, rotate by -20 .. 20 degrees (uniform), jitter 8. Part of the class recipe
    (``recipes.RECIPES["class"]``, doc/optvis.md): its images are recognised by other models more often."""
    return [
        pad(16, mode="constant", value=0.5),
        jitter(16),
        random_scale([0.75 + 0.05 * i for i in range(11)]),
        random_rotate(list(range(-20, 21))),
        jitter(8),
    ]


TRANSFORM_PRESETS = {"standard": standard_transforms, "strong": strong_transforms, "none": list}


def preset_transforms(name: str):
    """``visualize(transforms=...)`` for a ``TRANSFORM_PRESETS`` name: None for lucid's standard chain (visualize's
    default), else the preset's list."""
    return None if name == "standard" else TRANSFORM_PRESETS[name]()
