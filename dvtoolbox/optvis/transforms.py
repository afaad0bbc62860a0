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


def crop_or_pad(x: torch.Tensor, size: Sequence[int], value: float = 0.5) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, h, w): per axis, the centre h (w) rows (columns) when larger (the extra
    row or column of an odd difference comes off the bottom / right), else padded with ``value`` (the extra one
    bottom / right). The model then sees the content at the scale the transforms gave it."""
    h, w = int(size[0]), int(size[1])
    H, W = x.shape[-2:]
    top, left = max(0, (H - h) // 2), max(0, (W - w) // 2)
    x = x[..., top:top + min(H, h), left:left + min(W, w)]
    ph, pw = max(0, h - H), max(0, w - W)
    if ph or pw:
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2], mode="constant", value=float(value))
    return x


# ---------------------------------------------------------------------------------------------------- MACO's crops
# Random square boxes resized to a fixed size, and pixel noise: the transforms of MACO (Fel et al. 2023)
# and feature accentuation (Hamblin et al. 2024), ``maco_transforms()``.


def crop_resize(x: torch.Tensor, cy: float, cx: float, side: float, size: Sequence[int],
                fill: float = 0.5) -> torch.Tensor:
    """The box of ``side`` times the image's height and width centred at (``cy``, ``cx``) (fractions of the height
    and width, 0..1) of (N, C, H, W), resized bilinearly to ``size`` (h, w): (N, C, h, w). Output pixel (i, j)
    samples the input at column ((u + 1) W - 1) / 2 with u = side * ((2 j + 1) / w - 1) + 2 cx - 1 (rows alike);
    points outside the image read ``fill`` (bilinear against ``fill``, scipy's mode "grid-constant")."""
    if not side > 0:
        raise ValueError(f"crop side must be > 0, got {side!r}")
    n = x.shape[0]
    theta = torch.tensor([[float(side), 0.0, 2 * float(cx) - 1], [0.0, float(side), 2 * float(cy) - 1]],
                         dtype=x.dtype, device=x.device)
    h, w = int(size[0]), int(size[1])
    grid = F.affine_grid(theta.expand(n, 2, 3), [n, x.shape[1], h, w], align_corners=False)
    return F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill


class RandomBoxCrop(Transform):
    """A square-ish box (``side`` of the height and of the width) with side uniform in ``box`` = (lo, hi) and
    centre (cy, cx), each N(0.5, ``centre_sd``) clipped to [0, 1], resized to ``size`` (default: the input's)."""

    def __init__(self, box: Sequence[float] = (0.5, 1.0), centre_sd: float = 0.15, size=None, fill: float = 0.5):
        lo, hi = (float(b) for b in box)
        if not 0 < lo <= hi:
            raise ValueError(f"box must be (lo, hi) with 0 < lo <= hi, got {tuple(box)!r}")
        if not centre_sd >= 0:
            raise ValueError(f"centre_sd must be >= 0, got {centre_sd!r}")
        self.box, self.centre_sd, self.fill = (lo, hi), float(centre_sd), float(fill)
        self.size = None if size is None else (int(size[0]), int(size[1]))

    def get_params(self, x, generator):
        device = generator.device if generator is not None else "cpu"
        u = torch.rand(1, generator=generator, device=device, dtype=torch.float64).item()
        centre = torch.randn(2, generator=generator, device=device, dtype=torch.float64).cpu()
        cy, cx = (min(1.0, max(0.0, 0.5 + self.centre_sd * float(c))) for c in centre)
        return {"cy": cy, "cx": cx, "side": self.box[0] + u * (self.box[1] - self.box[0])}

    def kernel(self, x, cy, cx, side):
        return crop_resize(x, cy, cx, side, self.size or x.shape[-2:], self.fill)

    def __repr__(self):
        return f"random_box_crop(box={self.box}, centre_sd={self.centre_sd}, size={self.size})"


class PixelNoise(Transform):
    """``x + sd * N(0, 1) + sd * (U(0, 1) - 0.5)`` (MACO's pair of noises): one (1, C, H, W) draw per call, the same
    for every image of the batch (as every transform here draws once per call)."""

    def __init__(self, sd: float = 0.02):
        if not sd >= 0:
            raise ValueError(f"noise sd must be >= 0, got {sd!r}")
        self.sd = float(sd)

    def get_params(self, x, generator):
        shape = (1,) + tuple(x.shape[1:])
        gaussian = torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)
        uniform = torch.rand(shape, generator=generator, device=x.device, dtype=x.dtype)
        return {"noise": self.sd * gaussian + self.sd * (uniform - 0.5)}

    def kernel(self, x, noise):
        return x + noise

    def __repr__(self):
        return f"pixel_noise({self.sd})"


def random_box_crop(box: Sequence[float] = (0.5, 1.0), centre_sd: float = 0.15, size=None,
                    fill: float = 0.5) -> RandomBoxCrop:
    """A random box of side uniform in ``box`` (fractions of the image), centre N(0.5, centre_sd), resized."""
    return RandomBoxCrop(box, centre_sd, size, fill)


def pixel_noise(sd: float = 0.02) -> PixelNoise:
    """Gaussian plus uniform noise on every value."""
    return PixelNoise(sd)


MACO_BOX = (0.5, 1.0)
MACO_NOISE = 0.02


def maco_transforms() -> List[Transform]:
    """MACO's transforms at the model's scale (a new list each call): a random box of 0.5 .. 1.0 of the image
    (centre N(0.5, 0.15)) resized back to the image size, then noise of sd 0.02 (Gaussian plus uniform). The paper's
    code crops 0.25 .. 0.30 of a 1280-pixel canvas (horama) or 0.5 .. 0.05 of a 512-pixel one (xplique), i.e. the
    model sees the canvas at 0.6 .. 0.9 of its own scale; on a canvas of the model's size the same zoom range
    would need boxes larger than the image, so the boxes here zoom in by 1 .. 2 (doc/optvis.md#maco)."""
    return [random_box_crop(MACO_BOX), pixel_noise(MACO_NOISE)]


TRANSFORM_PRESETS["maco"] = maco_transforms
