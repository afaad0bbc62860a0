"""One visualize job, validated, and ``run_visualize(job)``: everything ``visualize.py`` does, callable from Python.

    from dvtoolbox.optvis.job import VisualizeJob, run_visualize

    written = run_visualize(VisualizeJob(objective="fc8:130", thresholds=(128, 256), output_dir="viz", brave=True))

The job builds the model (``models.load.load_model``), resolves the device, parses the objective once, checks every output
file against the overwrite rule BEFORE any work, renders with ``FeatureViz.visualize`` (or, with ``alpha``,
``alpha.render_transparent``: an RGBA image optimised over a background), and writes, all atomically:
``<output_dir>/<output_prefix>_step<T>_<n>.png`` per image and threshold (``alpha``: ``..._rgba.png`` with a real
alpha channel, ``_checker.png`` and ``_white.png`` composites, and ``_background.png``; param maco: MACO's
transparency map ``..._transparency.png`` at the last threshold; start_images: ``<prefix>_start_<n>.png``, the
photograph as the parameterisation reproduces it), ``<prefix>_info.txt``
(objective, device, seconds, the objective at step 1 and at each threshold) and ``<prefix>_config.yaml`` (``config``,
what the caller records of its settings, plus what the run resolved). Bad settings raise a one-line UsageError
naming the setting (the command line shows its flag instead).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import yaml
from torch import nn

from dvtoolbox import __version__
from dvtoolbox.checks import MAX_IMAGE_SIDE, MAX_IMAGES, MAX_SEED, check_int, check_real
from dvtoolbox.device import Execution, configure_precision, resolve_device
from dvtoolbox.errors import UsageError
from dvtoolbox.io.atomic import write_text_atomic
from dvtoolbox.io.images import (load_image_rgb, over_checkerboard, over_white, resize_center_crop, save_image,
                                 save_rgba_png)
from dvtoolbox.io.outputs import check_writable
from dvtoolbox.models.capture import layer_shapes
from dvtoolbox.models.layouts import model_layouts
from dvtoolbox.models.pixel_space import InputContract
from dvtoolbox.models.load import load_model
from dvtoolbox.models.registry import DEFAULT_MODEL
from dvtoolbox.objectives import Objective, create_objective
from dvtoolbox.objectives.expression import is_single_unit
from dvtoolbox.optvis.accentuate import (DEFAULT_COEF, StartPair, accentuation_objective, default_layer,
                                         start_image_param)
from dvtoolbox.optvis.alpha import ALPHA_COEF, ALPHA_TARGET, TransparentResult, render_transparent
from dvtoolbox.optvis.dvt import LRSchedule, model_pixel_image
from dvtoolbox.optvis.param import get_image, lowres_tensor, maco_image, to_valid_rgb
from dvtoolbox.optvis.recipes import RECIPES
from dvtoolbox.optvis.render import FIT_MODES, FeatureViz, check_thresholds
from dvtoolbox.optvis.transforms import TRANSFORM_PRESETS, preset_transforms
from dvtoolbox.regularizers.lr_policies import validate_lr_params
from dvtoolbox.regularizers.settings import Regularizers

log = logging.getLogger(__name__)

OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}
DEFAULT_BACKGROUND = "color"   # render_transparent's default
DEFAULT_ALPHA_JITTER = 2       # the notebook's jitter_n
ALPHA_SETTINGS = ("background", "adversarial_bg", "alpha_target", "alpha_coef", "alpha_jitter")
ALPHA_KINDS = ("rgba", "checker", "white")   # the files written per threshold with alpha


# ---------------------------------------------------------------------------------------------------- parameterisations


def _fft_or_pixel(fft: bool) -> Callable:
    def build(job: "VisualizeJob", contract: InputContract, h: int, w: int) -> Callable:
        return lambda: get_image(w=w, h=h, batch=job.batch, fft=fft, decorrelate=job.decorrelate,
                                 decay_power=job.decay_power)
    return build


def _lowres(job: "VisualizeJob", contract: InputContract, h: int, w: int) -> Callable:
    low = (job.batch, 3, max(1, h // job.lowres_factor), max(1, w // job.lowres_factor))

    def param_f():
        params, raw_f = lowres_tensor((job.batch, 3, h, w), low)
        return params, to_valid_rgb(raw_f, decorrelate=job.decorrelate)
    return param_f


def _dvt(job: "VisualizeJob", contract: InputContract, h: int, w: int) -> Callable:
    return lambda: model_pixel_image(contract, batch=job.batch, size=(h, w))


class KeepImageF:
    """A ``param_f`` that keeps the ``image_f`` it made (``.image_f``), for outputs read after the run (MACO's
    transparency map, the accentuation's start image, ``.start``)."""

    def __init__(self, param_f: Callable):
        self.param_f, self.image_f, self.start = param_f, None, None

    def __call__(self):
        params, self.image_f = self.param_f()
        return params, self.image_f


def _maco(job: "VisualizeJob", contract: InputContract, h: int, w: int) -> Callable:
    return KeepImageF(lambda: maco_image(w=w, h=h, batch=job.batch))


# name -> builder(job, contract, h, w) -> param_f: fft (Fourier, lucid's default), pixel (one value per pixel through
# a sigmoid), lowres (bilinearly upsampled), dvt (the image in the model's pixel space, as DVT's), maco (only the
# Fourier phase optimised, the amplitude natural images': ``param.maco``)
PARAMETERISATIONS: Dict[str, Callable] = {"fft": _fft_or_pixel(True), "pixel": _fft_or_pixel(False),
                                          "lowres": _lowres, "dvt": _dvt, "maco": _maco}


# ---------------------------------------------------------------------------------------------------- the job


@dataclass
class VisualizeJob:
    """Everything one visualize run needs (see the module docstring). ``model``, ``weights``, ``input_mean``,
    ``input_std``: as ``models.load.load_model`` takes them (a name, package.module:factory, a saved module, an
    nn.Module); ``layouts``: where some layers' channels are, over what is inferred. None for ``size`` means the
    model's input size; ``alpha`` turns on transparency, with ``background``, ``adversarial_bg``, ``alpha_target``,
    ``alpha_coef`` and ``alpha_jitter`` (None: their defaults); ``start_images`` (photograph paths, one per image
    or one for all) turn on feature accentuation (``optvis.accentuate``), with ``accent_layer`` (None: the
    objective's layer) and ``accent_coef`` (None: ``accentuate.DEFAULT_COEF``); ``fit``: how a transformed image
    reaches the model's input size (``FeatureViz``); ``recipe`` is recorded and warned about only (its settings are
    the caller's to apply: ``recipes.RECIPES``)."""

    objective: str = "_blocks.10:97"
    model: Union[str, nn.Module] = DEFAULT_MODEL
    weights: Union[None, str] = "default"
    input_mean: Optional[Tuple[float, float, float]] = None
    input_std: Optional[Tuple[float, float, float]] = None
    layouts: Dict[str, object] = field(default_factory=dict)
    param: str = "fft"
    decorrelate: bool = True
    decay_power: float = 1.0
    lowres_factor: int = 4
    size: Optional[int] = None
    batch: int = 1
    resize_to_contract: bool = True
    fit: str = "crop"
    start_images: Sequence[str] = ()
    accent_layer: Optional[str] = None
    accent_coef: Optional[float] = None
    alpha: bool = False
    background: Optional[str] = None
    adversarial_bg: bool = False
    alpha_target: Optional[float] = None
    alpha_coef: Optional[float] = None
    alpha_jitter: Optional[int] = None
    recipe: Optional[str] = None
    thresholds: Sequence[int] = (512,)
    lr: float = 0.05
    optimizer: str = "adam"
    transforms: str = "standard"
    views: int = 1
    seed: int = 0
    device: Optional[str] = None
    allow_tf32: bool = False  # the same as precision "tf32"
    engine: str = "auto"  # how the network step runs (dvtoolbox.device.Execution; not graphs)
    precision: str = "float32"  # of the network: true float32, "tf32" or "bf16"
    regularizers: Regularizers = field(default_factory=Regularizers)
    lr_policy: Optional[str] = None
    lr_params: Optional[Dict[str, float]] = None
    output_dir: str = "visualize_results"
    output_prefix: str = "viz"
    brave: bool = False
    progress: bool = False
    config: Dict[str, object] = field(default_factory=dict)
    parsed_objective: Optional[Objective] = field(init=False, repr=False, default=None)

    def __post_init__(self):
        self.thresholds = check_thresholds(self.thresholds)
        if self.allow_tf32 and self.precision not in ("float32", "tf32"):
            raise UsageError(f"allow_tf32 cannot be combined with precision {self.precision} (allow_tf32 is precision "
                             "tf32)", "allow_tf32", "precision")
        if self.execution.engine == "graphs":
            raise UsageError("engine graphs replays the DVT loop's iterations (optimize_image.py); visualize's steps "
                             "draw random transforms: use engine compiled", "engine")
        self._check_values()
        self._check_accent()
        self._check_alpha()
        if self.regularizers.active and self.param != "dvt":
            raise UsageError(f"regularizers need param dvt, got param {self.param}", "regularizers", "param")
        self.parsed_objective = create_objective(self.objective)  # parsed once; layers checked with the model

    def _check_values(self) -> None:
        choices = (("param", PARAMETERISATIONS), ("optimizer", OPTIMIZERS), ("transforms", TRANSFORM_PRESETS),
                   ("fit", FIT_MODES))
        for name, valid in choices:
            if getattr(self, name) not in valid:
                raise UsageError(f"{name} must be one of {', '.join(valid)}, got {getattr(self, name)!r}", name)
        if self.recipe is not None and self.recipe not in RECIPES:
            raise UsageError(f"recipe must be one of {', '.join(RECIPES)}, got {self.recipe!r}", "recipe")
        for name, low, high in (("batch", 1, MAX_IMAGES), ("size", 1, MAX_IMAGE_SIDE), ("views", 1, MAX_IMAGES),
                                ("lowres_factor", 1, None), ("seed", 0, MAX_SEED)):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), low, high)
        if not (math.isfinite(self.decay_power) and self.decay_power >= 0):
            raise UsageError(f"decay_power must be >= 0 and finite, got {self.decay_power}", "decay_power")
        if self.decay_power != 1.0 and self.param != "fft":
            raise UsageError(f"decay_power shapes the Fourier spectrum: it needs param fft, got {self.param}",
                             "decay_power", "param")
        check_real("lr", self.lr)
        if not self.lr > 0:
            raise UsageError(f"lr must be > 0, got {self.lr}", "lr")
        if self.lr_params is not None and self.lr_policy is None:
            raise UsageError("lr_params needs lr_policy", "lr_params", "lr_policy")
        if self.lr_policy is not None:
            validate_lr_params(self.lr_policy, self.lr_schedule.params)
        if not self.output_prefix or os.sep in self.output_prefix:
            raise UsageError(f"output_prefix must be a file name prefix without {os.sep!r}, got "
                             f"{self.output_prefix!r}", "output_prefix")

    def _check_accent(self) -> None:
        """The maco and accentuation rules that need no model."""
        self.start_images = tuple(self.start_images)
        if self.param == "maco" and not self.decorrelate:
            raise UsageError("param maco cannot be combined with decorrelate=False (it makes images in the "
                             "decorrelated colour space of its spectrum)", "param", "decorrelate=False")
        if not self.start_images:
            if self.recipe == "accent":
                raise UsageError("recipe accent accentuates a photograph: give start_images", "recipe",
                                 "start_images")
            for name in ("accent_layer", "accent_coef"):
                if getattr(self, name) is not None:
                    raise UsageError(f"{name} needs start_images", name, "start_images")
            return
        if self.param != "fft" or not self.decorrelate or self.alpha:
            raise UsageError("start_images needs param fft, without decorrelate=False or alpha (it starts a Fourier "
                             "image with decorrelated colour from the photographs)", "start_images", "param",
                             "decorrelate=False", "alpha")
        if self.batch not in (1, len(self.start_images)):
            raise UsageError(f"start_images gives {len(self.start_images)} images: batch must be 1 or "
                             f"{len(self.start_images)}, got {self.batch}", "batch", "start_images")
        self.batch = len(self.start_images)  # one image per photograph
        missing = [p for p in self.start_images if not os.path.isfile(p)]
        if missing:
            raise UsageError(f"start_images: no such file {missing[0]!r}", "start_images")
        if self.accent_coef is not None and not 0.0 <= self.accent_coef < float("inf"):
            raise UsageError(f"accent_coef must be >= 0 and finite, got {self.accent_coef}", "accent_coef")

    def _check_alpha(self) -> None:
        """The alpha rules that need no model: its settings need it, and it refuses what ``render_transparent``
        does not do (another parameterisation, several images, SGD, an lr policy, the DVT regularizers)."""
        if not self.alpha:
            given = [name for name in ALPHA_SETTINGS if getattr(self, name) not in (None, False)]
            if given:
                raise UsageError(f"{given[0]} needs alpha", given[0], "alpha")
            return
        if self.recipe not in (None, "lucid"):
            raise UsageError(f"alpha cannot be combined with recipe {self.recipe} (it renders one transparent image "
                             "with lucid's settings)", "alpha", "recipe")
        if self.views != 1:
            raise UsageError(f"views must be 1 with alpha, got {self.views}", "views", "alpha")
        refused = [("param " + str(self.param), "param", self.param != "fft"),
                   ("decorrelate", "decorrelate", not self.decorrelate),
                   (f"batch {self.batch}", "batch", self.batch != 1),
                   (f"optimizer {self.optimizer}", "optimizer", self.optimizer != "adam"),
                   ("lr_policy", "lr_policy", self.lr_policy is not None),
                   (f"decay_power {self.decay_power}", "decay_power", self.decay_power != 1.0),
                   ("regularizers", "regularizers", self.regularizers.active),
                   (f"engine {self.engine}", "engine", self.engine not in ("auto", "eager")),
                   ("precision bf16", "precision", self.precision == "bf16")]
        for what, name, bad in refused:
            if bad:
                raise UsageError(f"alpha cannot be combined with {what} (it optimises one RGBA Fourier image with "
                                 "decorrelated colour, with Adam at the constant lr)", "alpha", name, "lr")
        _, _, target, coef, jitter_n = self.alpha_settings
        if not 0.0 < target < 1.0:
            raise UsageError(f"alpha_target must be in (0, 1), got {target}", "alpha_target")
        if not 0.0 <= coef < float("inf"):
            raise UsageError(f"alpha_coef must be >= 0 and finite, got {coef}", "alpha_coef")
        if jitter_n < 0:
            raise UsageError(f"alpha_jitter must be >= 0, got {jitter_n}", "alpha_jitter")
        if self.adversarial_bg and self.alpha_settings[0] == "none":
            raise UsageError("adversarial_bg needs a background other than none (there is no background to "
                             "optimise)", "adversarial_bg", "background")

    @property
    def execution(self) -> Execution:
        """The engine and precision of the network step (``allow_tf32`` is precision tf32)."""
        return Execution(self.engine, "tf32" if self.allow_tf32 else self.precision)

    @property
    def alpha_settings(self) -> Tuple[str, bool, float, float, int]:
        """(background, adversarial, alpha_target, alpha_coef, jitter_n) with the defaults filled in."""
        return (self.background if self.background is not None else DEFAULT_BACKGROUND, bool(self.adversarial_bg),
                float(self.alpha_target if self.alpha_target is not None else ALPHA_TARGET),
                float(self.alpha_coef if self.alpha_coef is not None else ALPHA_COEF),
                int(self.alpha_jitter if self.alpha_jitter is not None else DEFAULT_ALPHA_JITTER))

    @property
    def lr_schedule(self) -> Optional[LRSchedule]:
        """The DVT lr policy setting the optimizer's lr each step, or None (the constant lr)."""
        if self.lr_policy is None:
            return None
        return LRSchedule(self.lr_policy, self.lr_params if self.lr_params is not None else {"lr": self.lr})


# ---------------------------------------------------------------------------------------------------- the run


def run_visualize(job: VisualizeJob) -> List[str]:
    """Run one job end to end (see the module docstring); returns the files written."""
    device = resolve_device(job.device)
    model = load_model(job.model, job.weights, job.input_mean, job.input_std)
    objective = create_objective(job.parsed_objective, model=model)
    if job.layouts:  # each declared layout fits its layer, before any file
        model_layouts(model, tuple(model.input_contract.size), job.layouts)
    if not job.resize_to_contract:
        check_input_size(model, image_size(job, model.input_contract))
    if job.alpha:
        return _run_alpha(job, model, device)
    h, w = image_size(job, model.input_contract)
    kwargs = render_kwargs(job)
    if job.start_images:
        param_f, objective = accentuation(job, model, objective, kwargs, h, w)
    else:
        param_f = PARAMETERISATIONS[job.param](job, model.input_contract, h, w)
    paths, extra = image_paths(job), extra_paths(job)
    check_writable([p for group in paths.values() for p in group] + list(extra.values()) + side_paths(job),
                   job.brave)
    _warn_if_too_few_steps(job.recipe, job.thresholds[-1])

    execution = job.execution.on(device)
    configure_precision(device, execution)
    fv = FeatureViz(model, objective, resize_to_contract=job.resize_to_contract, layouts=job.layouts, fit=job.fit)
    start = time.perf_counter()
    images = fv.visualize(param_f, device=device, show_progress=job.progress, execution=execution, **kwargs)
    elapsed = time.perf_counter() - start
    written = []
    for t, batch in zip(job.thresholds, images):
        for path, image in zip(paths[t], batch):
            save_image(path, image)
            written.append(path)
    written += write_extra(extra, param_f)
    info_path, config_path = side_paths(job)
    write_text_atomic(info_path, info_text(fv.objective, fv.history, job.thresholds, elapsed, device))
    write_text_atomic(config_path, config_text(job, device, images[0].shape[1:3]))
    return written + [info_path, config_path]


def render_kwargs(job: VisualizeJob) -> Dict[str, object]:
    """``FeatureViz.visualize``'s keyword arguments besides ``param_f``, the device and the progress bar."""
    optimizer = OPTIMIZERS[job.optimizer]
    return dict(thresholds=list(job.thresholds), lr=job.lr, seed=job.seed,
                transforms=preset_transforms(job.transforms), views=job.views,
                optimizer=lambda params: optimizer(params, lr=job.lr),
                regularizers=job.regularizers, lr_schedule=job.lr_schedule)


def accentuation(job: VisualizeJob, model, objective: Objective, kwargs: Dict[str, object], h: int,
                 w: int) -> Tuple[KeepImageF, Objective]:
    """start_images: the photographs' Fourier parameterisation (each resized to 256/224 of the side and centre-
    cropped), the ``StartPair`` pre-transform (set in ``kwargs``) and the objective with the feature distance
    (``optvis.accentuate``)."""
    if h != w:
        raise UsageError(f"start_images make square images and the size is {h}x{w}: give size", "start_images",
                         "size")
    starts = np.stack([resize_center_crop(load_image_rgb(p), h, round(h * 256 / 224)) for p in job.start_images])
    starts = torch.from_numpy(starts.astype(np.float32).transpose(0, 3, 1, 2) / 255.0)
    keep = KeepImageF(lambda: start_image_param(starts, job.decay_power))

    def pre_transform(image, generator):
        if keep.start is None:
            keep.start = keep.image_f().detach()
        return StartPair(keep.start)(image, generator)

    layer = job.accent_layer if job.accent_layer is not None else default_layer(objective, model)
    coef = DEFAULT_COEF if job.accent_coef is None else job.accent_coef
    kwargs["pre_transform"] = pre_transform
    return keep, accentuation_objective(objective, layer, coef, len(job.start_images), model=model)


def image_size(job: VisualizeJob, contract: InputContract) -> Tuple[int, int]:
    """(h, w): the job's size, else the model's input size."""
    return (job.size, job.size) if job.size is not None else tuple(contract.size)


def check_input_size(model, size) -> None:
    """resize_to_contract=False: the model must take images of ``size`` (H, W) as they are (a dry forward pass)."""
    try:
        layer_shapes(model, tuple(size))
    except RuntimeError as exc:
        raise UsageError(f"resize_to_contract=False: the model cannot take {size[0]}x{size[1]} images "
                         f"({str(exc).splitlines()[0]}); resize them, or give size "
                         f"{model.input_contract.size[0]}", "resize_to_contract=False", "size") from None


def _warn_if_too_few_steps(recipe: Optional[str], steps: int) -> None:
    if recipe is not None and steps < RECIPES[recipe].min_steps:
        log.warning("--recipe %s was measured at %d steps or more; this run takes %d",
                    recipe, RECIPES[recipe].min_steps, steps)


# ---------------------------------------------------------------------------------------------------- transparency


def alpha_kwargs(job: VisualizeJob, model) -> Dict[str, object]:
    """``render_transparent``'s keyword arguments (besides the model, device and progress bar), after the checks
    that need the model: a single-unit objective, a square image, alpha_jitter below its size."""
    if not is_single_unit(job.objective):
        raise UsageError("alpha needs a single unit, layer:channel or layer:channel:y:x (no sums, factors or "
                         f"@batch: the unit is read on the foreground's and the background's images), got "
                         f"{job.objective!r}", "alpha")
    h, w = image_size(job, model.input_contract)
    if h != w:
        raise UsageError(f"alpha makes square images and the model's input is {h}x{w}: give size", "alpha",
                         "size")
    background, adversarial, target, coef, jitter_n = job.alpha_settings
    if jitter_n >= w:
        raise UsageError(f"alpha_jitter must be smaller than the image size {w}, got {jitter_n}", "alpha_jitter")
    return dict(objective=job.objective, background=background, adversarial=adversarial, alpha_target=target,
                alpha_coef=coef, w=w, jitter_n=jitter_n, thresholds=list(job.thresholds), lr=job.lr,
                transforms=preset_transforms(job.transforms), seed=job.seed,
                resize_to_contract=job.resize_to_contract)


def _run_alpha(job: VisualizeJob, model, device) -> List[str]:
    """Check the outputs, ``render_transparent``, write the RGBA PNG and its two composites per threshold, the
    background (when there is one) and the side files; returns the files written."""
    kwargs = alpha_kwargs(job, model)
    paths = alpha_paths(job)
    bg_path = background_path(job) if kwargs["background"] != "none" else None
    check_writable([p for group in paths.values() for p in group.values()] + ([bg_path] if bg_path else [])
                   + side_paths(job), job.brave)

    configure_precision(device, job.execution.on(device))
    result = render_transparent(model, device=device, show_progress=job.progress, **kwargs)
    written = []
    for t, snapshot in zip(job.thresholds, result.snapshots):
        rgba = snapshot[0]
        save_rgba_png(paths[t]["rgba"], rgba)
        save_image(paths[t]["checker"], over_checkerboard(rgba))
        save_image(paths[t]["white"], over_white(rgba))
        written += [paths[t][kind] for kind in ALPHA_KINDS]
    if bg_path is not None:
        save_image(bg_path, result.backgrounds[0])
        written.append(bg_path)
    record = alpha_record(kwargs, result)
    info_path, config_path = side_paths(job)
    write_text_atomic(info_path, info_text(result.objective, result.history, job.thresholds, result.seconds, device,
                                           alpha_info_lines(record)))
    write_text_atomic(config_path, config_text(job, device, result.rgba.shape[1:3], record))
    return written + [info_path, config_path]


def alpha_record(kwargs: Dict[str, object], result: TransparentResult) -> dict:
    """The alpha settings used and the measured alpha mean, for config.yaml's ``resolved``."""
    return {"background": kwargs["background"], "adversarial": kwargs["adversarial"],
            "alpha-target": kwargs["alpha_target"], "alpha-coef": kwargs["alpha_coef"],
            "alpha-jitter": kwargs["jitter_n"], "alpha-mean": result.alpha_means[0]}


def alpha_info_lines(record: dict) -> List[str]:
    side = "" if record["background"] == "none" else (", adversarial" if record["adversarial"] else ", allied")
    return [f"alpha: background {record['background']}{side}, target {record['alpha-target']:g}, coef "
            f"{record['alpha-coef']:g}, jitter {record['alpha-jitter']}",
            f"alpha mean: {record['alpha-mean']:.6g}"]


# ---------------------------------------------------------------------------------------------------- outputs


def image_paths(job: VisualizeJob) -> Dict[int, List[str]]:
    """threshold -> one PNG path per image: OUTPUT_DIR/PREFIX_step<T>_<n>.png."""
    width = len(str(job.thresholds[-1]))
    return {t: [os.path.join(job.output_dir, f"{job.output_prefix}_step{t:0{width}d}_{n}.png")
                for n in range(job.batch)] for t in job.thresholds}


def alpha_paths(job: VisualizeJob) -> Dict[int, Dict[str, str]]:
    """alpha: threshold -> {kind: path} for the one image, OUTPUT_DIR/PREFIX_step<T>_0_<kind>.png, kind in
    ALPHA_KINDS."""
    return {t: {kind: paths[0][:-len(".png")] + f"_{kind}.png" for kind in ALPHA_KINDS}
            for t, paths in image_paths(job).items()}


def background_path(job: VisualizeJob) -> str:
    """alpha with a background: OUTPUT_DIR/PREFIX_step<T>_0_background.png, T the last threshold."""
    return image_paths(job)[job.thresholds[-1]][0][:-len(".png")] + "_background.png"


def extra_paths(job: VisualizeJob) -> Dict[int, str]:
    """Image n -> its extra file: MACO's transparency map at the last threshold
    (OUTPUT_DIR/PREFIX_step<T>_<n>_transparency.png), or the accentuation's start image (PREFIX_start_<n>.png)."""
    last = image_paths(job)[job.thresholds[-1]]
    if job.param == "maco":
        return {n: p[:-len(".png")] + "_transparency.png" for n, p in enumerate(last)}
    if job.start_images:
        return {n: os.path.join(job.output_dir, f"{job.output_prefix}_start_{n}.png") for n in range(len(last))}
    return {}


def write_extra(extra: Dict[int, str], param_f) -> List[str]:
    """Write ``extra_paths``' files from the run's ``KeepImageF``; returns the paths written."""
    if not extra:
        return []
    if param_f.start is None:  # maco: the transparency map, grey
        images = [np.repeat(m[:, :, None], 3, axis=2) for m in param_f.image_f.transparency_map()]
    else:
        images = list(param_f.start.permute(0, 2, 3, 1).cpu().numpy())
    for n, path in extra.items():
        save_image(path, images[n])
    return list(extra.values())


def side_paths(job: VisualizeJob) -> List[str]:
    return [os.path.join(job.output_dir, f"{job.output_prefix}_{name}") for name in ("info.txt", "config.yaml")]


def info_text(objective, history: Sequence[float], thresholds: Sequence[int], elapsed: float, device,
              extra: Sequence[str] = ()) -> str:
    """The objective, device, seconds, the objective at step 1 and at each threshold, then ``extra`` lines."""
    lines = [f"objective: {objective}", f"device: {device}", f"seconds: {elapsed:.2f}",
             f"objective at step 1: {history[0]:.6g}"]
    lines += [f"objective at step {t}: {history[t - 1]:.6g}" for t in thresholds]
    return "\n".join(lines + list(extra)) + "\n"


def config_text(job: VisualizeJob, device, size, alpha: Optional[dict] = None) -> str:
    """config.yaml: the caller's record (``job.config``), the version if it has none, and what was resolved:
    device, image size and (alpha) the alpha settings with their defaults filled in and the measured alpha mean."""
    resolved = {"device": str(device), "size": list(size)}
    if alpha is not None:
        resolved["alpha"] = alpha
    config = dict(job.config)
    config.setdefault("dvtoolbox-version", __version__)
    config["resolved"] = resolved
    return yaml.safe_dump(config, sort_keys=False)
