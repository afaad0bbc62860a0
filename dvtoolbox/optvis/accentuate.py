"""Feature accentuation (Hamblin, Fel, Saha, Konkle and Alvarez, 2024): start from a photograph, push a unit, and
stay close to the photograph in a chosen layer's feature space, so the image shows the photograph with the unit's
feature strengthened.

Contract: ``accentuate(model, objective, start, ...) => AccentResult`` (images per threshold, the objective's and
the distance's history). The pieces, usable with ``FeatureViz.visualize`` directly:

- ``start_image_param(start)`` -> ``(params, image_f)``: the Fourier parameterisation of ``get_image`` (decorrelated
  colour, sigmoid, lucid's 1 / f ** decay_power preconditioning) INITIALISED so that ``image_f()`` is the start
  image: the parameter is ``rfft2(z0, norm="ortho") / scale`` with z0 = ``spectrum.decorrelated_logit(start)``
  (values clipped to [1/255, 254/255]), so image_f() at step 0 equals the clipped start image to float32 rounding.
- ``StartPair(start)``: the ``pre_transform`` that appends the (fixed) start images to the batch, so every random
  transform (one draw per call for the whole batch) moves the image and its start image alike:
  scene = [image_0 .. image_{M-1}, start_0 .. start_{M-1}].
- ``accentuation_objective(objective, layer, coef, m)``: on the captured outputs of that 2M-row scene,
  ``objective(rows 0..M-1)`` minus ``coef`` times the feature distance
  ``mean((f[:M] - f[M:]) ** 2) / mean(f[M:] ** 2)`` in ``layer`` (the squared L2 distance to the start image's
  features, relative to their energy, so ``coef`` means the same in every layer). With ``coef`` > 0 and the push at
  0 the gradient is exactly zero at the start, so the image stays the start image.

Differences from the paper (decided here): the distance is the squared L2 relative to the start's feature energy
with a fixed ``coef`` (the paper's faccent uses the un-squared L2 norm per position, weighted by a balance measured
from the two gradients at the start; at the start that gradient is zero here); the parameterisation is lucid's
Fourier one with decorrelated colour (faccent: Fourier phase and magnitude), the transforms MACO's box crops and
noise (``transforms.maco_transforms``), Adam (the paper: Adam 0.05).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch

from dvtoolbox.errors import UsageError
from dvtoolbox.objectives import INPUT, Activations, Objective, create_objective
from dvtoolbox.optvis.param.color import linear_decorrelate_color
from dvtoolbox.optvis.param.rng import DeviceLike, resolve
from dvtoolbox.optvis.param.spatial import spectrum_scale

DEFAULT_COEF = 30.0   # tuned on two classes of the tune draw (doc/optvis.md#feature-accentuation)
DEFAULT_LR = 0.02
DEFAULT_DECAY_POWER = 1.0


def _start_array(start) -> np.ndarray:
    """(H, W, 3) or (N, H, W, 3) floats in [0, 1], or an (N, 3, H, W) tensor -> (N, 3, H, W) float64."""
    if isinstance(start, torch.Tensor):
        a = start.detach().cpu().numpy().astype(np.float64)
        if a.ndim != 4 or a.shape[1] != 3:
            raise UsageError(f"start image tensor must be (N, 3, H, W), got shape {tuple(a.shape)}")
    else:
        a = np.asarray(start, dtype=np.float64)
        if a.ndim == 3:
            a = a[None]
        if a.ndim != 4 or a.shape[3] != 3:
            raise UsageError(f"start image must be (H, W, 3) or (N, H, W, 3) RGB, got shape {a.shape}")
        a = a.transpose(0, 3, 1, 2)
    if not np.all(np.isfinite(a)) or a.min() < 0 or a.max() > 1:
        raise UsageError("start image values must be finite and in [0, 1]")
    return a


def start_image_param(start, decay_power: float = DEFAULT_DECAY_POWER, generator: Optional[torch.Generator] = None,
                      device: DeviceLike = None):
    """A Fourier image (decorrelated colour, sigmoid) whose ``image_f()`` starts as ``start`` (clipped to
    [1/255, 254/255]): ``([spectrum], image_f)``, image_f() (N, 3, H, W) in (0, 1). ``start``: (H, W, 3) or
    (N, H, W, 3) in [0, 1], or an (N, 3, H, W) tensor. Nothing is random (``generator`` is accepted for the
    parameterisation contract)."""
    from dvtoolbox.optvis.spectrum import decorrelated_logit

    _, device = resolve(generator, device)
    images = _start_array(start)
    n, _, h, w = images.shape
    z0 = np.stack([decorrelated_logit(image) for image in images])
    scale_np = spectrum_scale(h, w, decay_power)
    init = np.fft.rfft2(z0, norm="ortho") / scale_np
    spectrum = torch.tensor(np.stack([init.real, init.imag], axis=-1), dtype=torch.float32,
                            device=device).requires_grad_(True)
    scale = torch.tensor(scale_np, dtype=torch.float32, device=device)

    def image_f() -> torch.Tensor:
        z = torch.fft.irfft2(torch.view_as_complex(spectrum) * scale, s=(h, w), norm="ortho")
        return torch.sigmoid(linear_decorrelate_color(z))

    return [spectrum], image_f


class StartPair:
    """``pre_transform`` for ``FeatureViz.visualize``: (M, 3, H, W) image -> (2M, 3, H, W) [image, start]. ``start``
    is an (M, 3, H, W) tensor (fixed, no gradient), e.g. ``image_f()`` at step 0 detached."""

    def __init__(self, start: torch.Tensor):
        self.start = start.detach()

    def __call__(self, image: torch.Tensor, generator=None) -> torch.Tensor:
        if image.shape != self.start.shape:
            raise UsageError(f"image {tuple(image.shape)} and start image {tuple(self.start.shape)} differ in shape")
        return torch.cat([image, self.start.to(image.device, image.dtype)], dim=0)


def feature_distance(f: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
    """``mean((f - f0) ** 2) / mean(f0 ** 2)`` (the denominator is a constant: no gradient; 1e-12 at least)."""
    return ((f - f0) ** 2).mean() / (f0.detach() ** 2).mean().clamp_min(1e-12)


def accentuation_objective(objective, layer: str, coef: float, m: int, model=None) -> Objective:
    """The objective of a 2M-row scene [images, start images] (``StartPair``): ``objective`` on rows 0..M-1 (every
    captured output sliced; ``"input"`` is the image itself) minus ``coef * feature_distance(f[:M], f[M:])`` in
    ``layer``. ``objective``: anything ``create_objective`` takes."""
    inner = create_objective(objective, model=model)
    if not coef >= 0 or not np.isfinite(coef):
        raise UsageError(f"accentuation coef must be >= 0 and finite, got {coef!r}")
    if model is not None:
        create_objective(f"{layer}:0", model=model)  # an unknown layer lists the valid ones

    def fn(acts):
        sliced = {name: t[:m] if isinstance(t, torch.Tensor) and t.dim() and t.shape[0] == 2 * m else t
                  for name, t in acts.items() if name != INPUT}
        sliced[INPUT] = acts[INPUT]
        value = inner(Activations(sliced, getattr(acts, "labels", None), getattr(acts, "layouts", None)))
        if coef == 0:
            return value
        f = acts[layer]
        return value - coef * feature_distance(f[:m], f[m:2 * m])

    layers = None if inner.layers is None else inner.layers | {layer}
    return Objective(fn, "accentuation", f"accentuate({inner}, {layer}, coef={coef:g})", layers)


def default_layer(objective, model=None) -> str:
    """The layer the distance is measured in when none is given: the objective's own layer when it reads exactly
    one (besides "input"), else a UsageError asking for one."""
    layers = create_objective(objective, model=model).layers
    named = sorted(set(layers or ()) - {INPUT})
    if len(named) != 1:
        raise UsageError(f"give the accentuation layer (the objective reads {named or 'every layer'})")
    return named[0]


@dataclass
class AccentResult:
    """images: one (N, H, W, 3) float32 numpy batch in [0, 1] per threshold; start: (N, H, W, 3) the start image as
    the parameterisation reproduces it; history: the full objective per step; layer, coef: what was used."""

    images: List[np.ndarray]
    start: np.ndarray
    history: List[float] = field(default_factory=list)
    layer: str = ""
    coef: float = DEFAULT_COEF


def accentuate(model, objective, start, layer: Optional[str] = None, coef: float = DEFAULT_COEF,
               thresholds: Sequence[int] = (256,), lr: float = DEFAULT_LR, transforms: Optional[list] = None,
               views: int = 4, decay_power: float = DEFAULT_DECAY_POWER, seed: int = 0,
               device: DeviceLike = None, show_progress: bool = False,
               optimizer: Optional[Callable] = None) -> AccentResult:
    """Feature accentuation of ``objective`` on ``start`` ((H, W, 3) or (N, H, W, 3) in [0, 1], at the size to
    optimise; N images each pushed by the same objective): ``start_image_param`` + ``StartPair`` +
    ``accentuation_objective`` in ``FeatureViz.visualize`` with ``transforms`` (default
    ``transforms.maco_transforms()``) and ``views`` copies per step, Adam at ``lr``. ``layer``: where the distance
    is measured (default the objective's layer)."""
    from dvtoolbox.optvis.render import FeatureViz
    from dvtoolbox.optvis.transforms import maco_transforms

    layer = default_layer(objective, model) if layer is None else layer
    images0 = _start_array(start)
    m = images0.shape[0]
    fv = FeatureViz(model, accentuation_objective(objective, layer, coef, m, model=model))
    holder = {}

    def param_f():
        params, image_f = start_image_param(torch.from_numpy(images0), decay_power)
        with torch.no_grad():
            holder["start"] = image_f().detach()
        return params, image_f

    def pre_transform(image, generator):
        return StartPair(holder["start"])(image, generator)

    images = fv.visualize(param_f, thresholds=thresholds, lr=lr, optimizer=optimizer,
                          transforms=maco_transforms() if transforms is None else transforms, seed=seed,
                          device=device, pre_transform=pre_transform, views=views, show_progress=show_progress)
    start_np = holder["start"].permute(0, 2, 3, 1).cpu().numpy().astype(np.float32)
    return AccentResult(images, start_np, list(fv.history), layer, float(coef))
