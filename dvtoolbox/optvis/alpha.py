"""Transparent feature visualisation: lucid's alpha notebook ("semi-transparent feature visualizations") on
dvtoolbox models, with its knobs and their meaning.

An RGBA foreground (``get_image(w, alpha=True)``: colour through the decorrelated Fourier path, alpha a sigmoid)
is optimised together with one or more BACKGROUNDS (``backgrounds.py``). Each step, for each foreground n and its
background (phase 1b of ``FeatureViz.visualize``, the ``pre_transform`` hook):

    rgb, a, bg  = jitter(rgb), jitter(a), jitter(bg)         three independent random crops of jitter_n pixels
    batch[2n]   = rgb * a + (1 - a) * stop(bg)                trains the FOREGROUND only
    batch[2n+1] = stop(rgb * a) + stop(1 - a) * bg            trains the BACKGROUND only

then the usual transforms (lucid's standard ones unless given) and the model. The objective MAXIMISED is

    sum_n  fg_term(batch=2n) + s_n * bg_term(batch=2n+1)  -  alpha_coef * sum_n (mean(a_n) - alpha_target) ** 2

with s_n = -1 for an ADVERSARIAL background (it learns to lower the unit the foreground raises) and +1 for an
ALLIED one; the alpha means are of the foregrounds before jitter and transforms. Adam, lr 0.05, 512 steps.

- Experiment 1, ``alpha_experiment``: one foreground, one background; fg_term = bg_term = ``channel``.
- Experiment 2, ``alpha_experiment_2``: N foregrounds sharing part of their parameters (each raw foreground is
  ``shared_param_coef * shared + own``, both a sum of ``lowres_tensor`` at 1, 1/2, 1/4, 1/8 resolution divided by
  4), one per background of a list; fg_term = ``neuron`` (the centre), bg_term = ``neuron + channel``.
- ``render_transparent``: experiment 1 for any "layer:channel" objective and a background by name (the CLI's).
- ``image_sample_grid``: the notebook's first cell, random images of the prior for decay_power x decorrelate.

All randomness (initial values, noise backgrounds, offsets, jitters, transforms) comes from the one generator
``FeatureViz.visualize`` seeds with ``seed``: the same seed, device and arguments give the same RGBA bits.
Images come back as numpy (N, H, W, 4) float32 in [0, 1] (RGB, then alpha); ``dvtoolbox.io.images`` writes RGBA
PNGs and composites over a checkerboard or white.
"""

from __future__ import annotations

import logging
import numbers
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from dvtoolbox.errors import UsageError
from dvtoolbox import objectives as objectives_module
from dvtoolbox.optvis.backgrounds import EXPERIMENT2_BACKGROUNDS, Background, BgFunc, background_by_name
from dvtoolbox.objectives import INPUT, Objective, create_objective, wrap_objective
from dvtoolbox.objectives.library import layer_output
from dvtoolbox.optvis.param.color import linear_decorrelate_color
from dvtoolbox.optvis.param.images import get_image, image_sample
from dvtoolbox.optvis.param.spatial import laplacian_pyramid
from dvtoolbox.optvis.render import FeatureViz, _model_device, check_thresholds
from dvtoolbox.optvis.transforms import jitter

log = logging.getLogger(__name__)

ALPHA_COEF = 1e4
ALPHA_TARGET = 0.25
UnitFactory = Callable[[int], Objective]  # batch index -> the unit's objective on that batch element


# ---------------------------------------------------------------------------------------------------- composite


def composite_with_stopped_gradients(rgba: torch.Tensor, backgrounds: torch.Tensor, jitter_n: int = 0,
                                     generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """The notebook's composite. rgba: (N, 4, H, W) foregrounds in [0, 1]; backgrounds: (N, 3, H, W) (or (1, 3,
    H, W) for all). Returns (2N, 3, H - j, W - j), j = jitter_n: element 2n = ``rgb * a + (1 - a) * stop(bg)``
    (gradient to the foreground only), element 2n+1 = ``stop(rgb * a) + stop(1 - a) * bg`` (to the background
    only), where rgb, a and bg of foreground n are cropped by three independent ``jitter(jitter_n)`` draws."""
    if rgba.dim() != 4 or rgba.shape[1] != 4:
        raise ValueError(f"the foreground must be (N, 4, H, W) RGBA, got shape {tuple(rgba.shape)}")
    n = rgba.shape[0]
    if backgrounds.dim() != 4 or backgrounds.shape[1] != 3 or backgrounds.shape[0] not in (1, n) \
            or backgrounds.shape[2:] != rgba.shape[2:]:
        raise ValueError(f"backgrounds must be (N or 1, 3, H, W) for foregrounds {tuple(rgba.shape)}, got "
                         f"{tuple(backgrounds.shape)}")
    crop = jitter(jitter_n) if jitter_n else (lambda t, g: t)
    out = []
    for i in range(n):
        rgb, a = rgba[i:i + 1, :3], rgba[i:i + 1, 3:4]
        bg = backgrounds[i:i + 1] if backgrounds.shape[0] == n else backgrounds
        rgb, a, bg = crop(rgb, generator), crop(a, generator), crop(bg, generator)
        out.append(rgb * a + (1 - a) * bg.detach())                 # the foreground learns
        out.append((rgb * a).detach() + (1 - a).detach() * bg)      # the background learns
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------------- objectives


@wrap_objective(layer_args=(), reads=(INPUT,))
def alpha_mean_penalty(target: float = ALPHA_TARGET, batch=None):
    """Penalty: ``sum over images of (mean(alpha) - target) ** 2``, alpha the fourth channel of the (N, 4, H, W)
    ``"input"`` image (the foregrounds before any transform). Non-negative: subtract it, times a coefficient (the
    notebook's ``alpha_loss_coef`` 1e4 and target 0.25)."""

    def inner(acts):
        x = layer_output(acts, INPUT, batch)
        if x.dim() != 4 or x.shape[1] != 4:
            raise UsageError(f"alpha_mean_penalty needs RGBA (N, 4, H, W) images, got shape {tuple(x.shape)}")
        return (x[:, 3].reshape(x.shape[0], -1).mean(1) - float(target)).pow(2).sum()

    return inner


def transparent_objective(fg_term: UnitFactory, bg_term: UnitFactory, adversarial: Sequence[bool],
                          alpha_coef: float = ALPHA_COEF, alpha_target: float = ALPHA_TARGET) -> Objective:
    """``sum_n fg_term(2n) + s_n bg_term(2n + 1) - alpha_coef * alpha_mean_penalty(alpha_target)``, s_n = -1 for an
    adversarial background and +1 for an allied one (the module docstring's batch layout)."""
    terms = []
    for n, adv in enumerate(adversarial):
        terms.append(fg_term(2 * n))
        terms.append(-bg_term(2 * n + 1) if adv else bg_term(2 * n + 1))
    return Objective.sum(terms) - float(alpha_coef) * alpha_mean_penalty(alpha_target)


def unit_factory(objective: Union[str, UnitFactory]) -> UnitFactory:
    """``"layer:channel"`` / ``"layer:channel:y:x"`` -> ``batch -> Objective`` on that batch element; a callable
    ``batch -> Objective`` is returned unchanged."""
    if isinstance(objective, str):
        create_objective(objective)  # a bad string fails here, once
        return lambda b: create_objective(objective, batch=b)
    if isinstance(objective, Objective) or not callable(objective):
        raise UsageError("a transparent visualisation needs 'layer:channel' or a function batch -> Objective "
                         f"(the unit is read on two batch elements), got {objective!r}")
    return objective


# ---------------------------------------------------------------------------------------------------- results


@dataclass
class TransparentResult:
    """rgba: (N, w, w, 4) float32 in [0, 1], the foregrounds after the last step (RGB, alpha); snapshots: the same
    after each threshold; backgrounds: (N, w, w, 3) float32, one draw of each background after the last step, or
    None; adversarial: one flag per foreground; alpha_means: mean alpha of each foreground; history: the objective
    at each step; seconds: wall time of the optimisation."""

    rgba: np.ndarray
    snapshots: List[np.ndarray]
    backgrounds: Optional[np.ndarray]
    adversarial: Tuple[bool, ...]
    alpha_means: Tuple[float, ...]
    history: List[float]
    seconds: float
    objective: str = ""
    names: Tuple[str, ...] = field(default_factory=tuple)


def _run(model: nn.Module, objective: Objective, param_f: Callable, bg_funcs: Sequence[Optional[BgFunc]], w: int,
         jitter_n: int, adversarial: Sequence[bool], steps: int, thresholds, lr: float, transforms, seed: int,
         device, resize_to_contract: bool, show_progress: bool) -> TransparentResult:
    """Optimise ``param_f``'s foregrounds with one background each (or none when ``bg_funcs`` is [None])."""
    thresholds = check_thresholds(thresholds if thresholds is not None else [int(steps)])
    if not isinstance(jitter_n, numbers.Integral) or not 0 <= jitter_n < w:
        raise UsageError(f"jitter_n must be an integer in [0, {w}), got {jitter_n!r}")
    with_backgrounds = bg_funcs and bg_funcs[0] is not None
    backgrounds: List[Background] = []

    def full_param_f():
        params, fg_f = param_f()
        params = list(params)
        if with_backgrounds:
            backgrounds[:] = [bg_func(w) for bg_func in bg_funcs]
            params += [p for bg in backgrounds for p in bg.params]
        return params, fg_f

    def pre_transform(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        bg = torch.cat([b.draw(generator) for b in backgrounds])
        return composite_with_stopped_gradients(image, bg, jitter_n, generator)

    fv = FeatureViz(model=model, objective=objective, resize_to_contract=resize_to_contract)
    start = time.perf_counter()
    snapshots = fv.visualize(full_param_f, thresholds=thresholds, lr=lr, transforms=transforms, seed=seed,
                             device=device, show_progress=show_progress,
                             pre_transform=pre_transform if with_backgrounds else None)
    seconds = time.perf_counter() - start
    bg_images = None
    if with_backgrounds:
        generator = torch.Generator(device=_model_device(fv.model))
        generator.manual_seed(int(seed))
        with torch.no_grad():
            bg_images = torch.cat([b.draw(generator) for b in backgrounds]).permute(0, 2, 3, 1).cpu().numpy()
    rgba = snapshots[-1]
    alpha_means = tuple(float(m) for m in rgba[..., 3].reshape(rgba.shape[0], -1).mean(1))
    log.info("%s: %d steps in %.1f s, alpha means %s", str(objective)[:100], thresholds[-1], seconds,
             ", ".join(f"{m:.3f}" for m in alpha_means))
    return TransparentResult(rgba, snapshots, bg_images, tuple(bool(a) for a in adversarial), alpha_means,
                             fv.history, seconds, str(objective))


# ---------------------------------------------------------------------------------------------------- experiments


def alpha_experiment(model: nn.Module, layer: str, neuron: int, bg_func: BgFunc, alpha_loss_coef: float = ALPHA_COEF,
                     jitter_n: int = 2, w: int = 128, bg_adv: bool = True, transforms=None, *,
                     alpha_target: float = ALPHA_TARGET, steps: int = 512, thresholds=None, lr: float = 0.05,
                     seed: int = 0, device=None, resize_to_contract: bool = False,
                     show_progress: bool = False) -> TransparentResult:
    """The notebook's ``alpha_experiment``: channel ``neuron`` of ``layer`` with one RGBA foreground of w x w over
    ``bg_func``'s background, adversarial (``bg_adv``) or allied; the module docstring gives the objective.

    transforms: None for lucid's standard transforms (the notebook's default), a list, or [] for none. steps /
    thresholds: 512 (the notebook's) / the steps at which snapshots are kept. lr: Adam's (0.05, lucid's). seed,
    device: see ``FeatureViz.visualize``. resize_to_contract: resize to the model's input size before the forward
    pass (False, as lucid, feeds the w - jitter_n image as it is; True is needed by fixed-size models).
    Returns a ``TransparentResult`` (rgba (1, w, w, 4)).
    """
    def unit(b):
        return objectives_module.channel(layer, neuron, batch=b)

    objective = transparent_objective(unit, unit, [bg_adv], alpha_loss_coef, alpha_target)
    return _run(model, objective, lambda: get_image(w, alpha=True), [bg_func], w, jitter_n, [bg_adv], steps,
                thresholds, lr, transforms, seed, device, resize_to_contract, show_progress)


def shared_foregrounds(n: int, w: int, shared_param_coef: float = 0.5, generator=None, device=None):
    """Experiment 2's parameterisation: ``(params, image_f)``, image_f() (n, 4, w, w) RGBA in (0, 1). Raw
    foreground i = ``shared_param_coef * P_shared + P_i``, each P = ``laplacian_pyramid((1, 4, w, w), 4) / 4`` (the
    sum of lowres tensors at 1, 1/2, 1/4, 1/8 resolution, sd 0.01); RGB = sigmoid of the colour-decorrelated first
    three channels, alpha = sigmoid of the fourth. The shared pyramid is drawn first, then the n own ones."""
    def pyramid():
        return laplacian_pyramid((1, 4, w, w), n_levels=4, generator=generator, device=device)

    shared_params, shared_f = pyramid()
    own = [pyramid() for _ in range(int(n))]
    params = list(shared_params) + [p for own_params, _ in own for p in own_params]
    coef = float(shared_param_coef)

    def image_f() -> torch.Tensor:
        shared = shared_f() / 4.0
        raw = torch.cat([coef * shared + own_f() / 4.0 for _, own_f in own])
        rgb = torch.sigmoid(linear_decorrelate_color(raw[:, :3]))
        return torch.cat([rgb, torch.sigmoid(raw[:, 3:])], dim=1)

    return params, image_f


def alpha_experiment_2(model: nn.Module, layer: str, neuron: int,
                       bg_list: Sequence[Tuple[bool, BgFunc]] = EXPERIMENT2_BACKGROUNDS, w: int = 128,
                       jitter_n: int = 2, shared_param_coef: float = 0.5, *, alpha_coef: float = ALPHA_COEF,
                       alpha_target: float = ALPHA_TARGET, transforms=None, steps: int = 512, thresholds=None,
                       lr: float = 0.05, seed: int = 0, device=None, resize_to_contract: bool = False,
                       show_progress: bool = False) -> TransparentResult:
    """The notebook's ``alpha_experiment_2``: one foreground per ``(adversarial, bg_func)`` of ``bg_list`` (default
    its eight), parameterised by ``shared_foregrounds(len(bg_list), w, shared_param_coef)``; a batch of 2N. The
    foreground term is the centre ``neuron`` of channel ``neuron``; the background term ``neuron + channel``
    (adversarial: subtracted). Other arguments as ``alpha_experiment``. Returns rgba (N, w, w, 4)."""
    if not bg_list:
        raise UsageError("alpha_experiment_2 needs at least one (adversarial, background) pair")
    adversarial = [bool(adv) for adv, _ in bg_list]

    def fg_term(b):
        return objectives_module.neuron(layer, neuron, batch=b)

    def bg_term(b):
        return objectives_module.neuron(layer, neuron, batch=b) + objectives_module.channel(layer, neuron, batch=b)

    objective = transparent_objective(fg_term, bg_term, adversarial, alpha_coef, alpha_target)
    return _run(model, objective, lambda: shared_foregrounds(len(bg_list), w, shared_param_coef),
                [bg for _, bg in bg_list], w, jitter_n, adversarial, steps, thresholds, lr, transforms, seed, device,
                resize_to_contract, show_progress)


def render_transparent(model: nn.Module, objective: Union[str, UnitFactory], background: str = "color",
                       adversarial: bool = True, alpha_target: float = ALPHA_TARGET, alpha_coef: float = ALPHA_COEF,
                       w: int = 128, jitter_n: int = 2, steps: int = 512, thresholds=None, lr: float = 0.05,
                       transforms=None, seed: int = 0, device=None, resize_to_contract: bool = False,
                       show_progress: bool = False) -> TransparentResult:
    """A transparent visualisation of ``objective`` for a command line (``--alpha``).

    objective: ``"layer:channel"`` or ``"layer:channel:y:x"`` (or ``batch -> Objective``).
    background (``--background``): ``"none"`` (no background element: the RGBA image over ``FeatureViz``'s fresh
    random background each step, plus the alpha penalty), ``"noise"``, ``"image"`` (an optimised image),
    ``"offset-image"`` (an optimised larger image seen through a random window) or ``"color"`` (one optimised
    colour); the notebook's settings (``backgrounds.CLI_BACKGROUNDS``). adversarial (``--adversarial-bg``): the
    background lowers the unit (else it raises it). alpha_target / alpha_coef (``--alpha-target`` /
    ``--alpha-coef``): the penalty ``alpha_coef * (mean alpha - alpha_target) ** 2``. Other arguments as
    ``alpha_experiment``. Returns a ``TransparentResult`` whose ``rgba`` is (1, w, w, 4); write it with
    ``dvtoolbox.io.images.save_rgba_png`` / ``over_checkerboard``.
    """
    unit = unit_factory(objective)
    bg_func = background_by_name(background)
    if bg_func is None:
        objective_ = unit(0) - float(alpha_coef) * alpha_mean_penalty(alpha_target)
        return _run(model, objective_, lambda: get_image(w, alpha=True), [None], w, jitter_n, [], steps,
                    thresholds, lr, transforms, seed, device, resize_to_contract, show_progress)
    objective_ = transparent_objective(unit, unit, [adversarial], alpha_coef, alpha_target)
    return _run(model, objective_, lambda: get_image(w, alpha=True), [bg_func], w, jitter_n, [adversarial], steps,
                thresholds, lr, transforms, seed, device, resize_to_contract, show_progress)


# ---------------------------------------------------------------------------------------------------- samples


def image_sample_grid(w: int = 64, n: int = 10, decay_powers: Sequence[float] = (1, 1.5, 2),
                      decorrelates: Sequence[bool] = (False, True), seed: int = 0) -> np.ndarray:
    """The notebook's first cell: random images from the Fourier prior. Row r = (decorrelate, decay_power) in the
    order ``for decorrelate in decorrelates: for decay_power in decay_powers``; column k = ``image_sample((1, 3, w,
    w), sd=20 ** (1 - decay_power) * k / 20, decay_power, decorrelate)``, k = 0 .. n - 1 (k = 0 is flat grey).
    Returns (rows, n, w, w, 3) float32 in (0, 1), drawn in that order from one CPU generator seeded ``seed``."""
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    rows = []
    for decorrelate in decorrelates:
        for decay_power in decay_powers:
            reg = 20.0 ** (1.0 - float(decay_power))
            row = [image_sample((1, 3, w, w), sd=reg * k / 20.0, decay_power=decay_power, decorrelate=decorrelate,
                                generator=generator)[0].permute(1, 2, 0).numpy() for k in range(int(n))]
            rows.append(np.stack(row))
    return np.stack(rows).astype(np.float32)
