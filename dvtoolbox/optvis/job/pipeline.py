"""Running a visualize job: ``run_visualize(job)``, everything ``visualize.py`` does below its parser.

Open the run (``run.context.open_run``: device, execution, model), check the objective against the model and
every output file against the overwrite rule BEFORE any work, render with ``FeatureViz.visualize`` (or, with
``alpha``, ``alpha.render_transparent``: an RGBA image optimised over a background), and write (``outputs``).
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from dvtoolbox.errors import UsageError
from dvtoolbox.io.images import load_image_rgb, resize_center_crop
from dvtoolbox.models.capture import layer_shapes, takes_other_sizes
from dvtoolbox.models.layouts import Layout, model_layouts, survey_layers
from dvtoolbox.models.pixel_space import InputContract
from dvtoolbox.dictionaries.binding import check_dictionary_layers
from dvtoolbox.objectives import Objective, create_objective
from dvtoolbox.objectives.expression import is_single_unit
from dvtoolbox.optvis.accentuate import (DEFAULT_COEF, StartPair, accentuation_objective, default_layer,
                                         start_image_param)
from dvtoolbox.optvis.alpha import render_transparent
from dvtoolbox.optvis.job.outputs import (alpha_paths, background_path, extra_paths, image_paths, side_paths,
                                          write_render, write_transparent)
from dvtoolbox.optvis.job.parameterisations import PARAMETERISATIONS, KeepImageF
from dvtoolbox.optvis.job.settings import OPTIMIZERS, VisualizeJob
from dvtoolbox.optvis.recipes import RECIPES
from dvtoolbox.optvis.render import FeatureViz
from dvtoolbox.optvis.transforms import preset_transforms
from dvtoolbox.run.context import RunContext, open_run

log = logging.getLogger(__name__)


def run_visualize(job: VisualizeJob, announce: Optional[Callable[[str], None]] = None) -> List[str]:
    """Run one job end to end (see the module docstring); returns the files written. ``announce`` gets the one
    line that says what ``recipe="auto"`` chose (default: logged at INFO). A job with ``units`` runs as
    ``units.run_units`` says."""
    if job.units is not None:
        from dvtoolbox.optvis.job.units import run_units  # it builds on this module's helpers

        return run_units(job, announce)
    context = open_run(job.model_choice, job.device, job.execution, job.brave)
    model = context.model
    if job.text is not None:
        job.text_objective()
    objective = create_objective(job.parsed_objective, model=model)
    settle_with_model(job, model)
    say = lambda: job.auto_choice is None or (announce or log.info)(job.auto_choice.line())  # noqa: E731
    if job.alpha:
        check_model_survey(job, model)
        say()
        return run_transparent(job, context)
    h, w = image_size(job, model.input_contract)
    kwargs = render_kwargs(job)
    if job.start_images:
        param_f, objective = accentuation(job, model, objective, kwargs, h, w)
    else:
        param_f = PARAMETERISATIONS[job.param](job, model.input_contract, h, w)
    # its survey, before any file: the model takes its own input size, each declared layout fits its layer
    fv = FeatureViz(model, objective, resize_to_contract=job.resize_to_contract, layouts=job.layouts, fit=job.fit,
                    programs=context.programs)
    paths, extra = image_paths(job), extra_paths(job)
    context.check_outputs([p for group in paths.values() for p in group] + list(extra.values()) + side_paths(job))
    warn_if_too_few_steps(job.recipe_name, job.thresholds[-1])
    say()  # what recipe auto chose, once every check has passed

    start = time.perf_counter()
    images = fv.visualize(param_f, device=context.device, show_progress=job.progress, execution=context.execution,
                          **kwargs)
    return write_render(job, context, fv, images, param_f, time.perf_counter() - start)


def settle_with_model(job: VisualizeJob, model, survey: bool = False):
    """What needs the model, before any file: each dictionary fits its layer's channels, recipe auto chooses (and
    whether the image is fed at its own size), and a model fed at its own size takes that size. Returns the
    layer survey ``(shapes, layouts)``, made when ``survey`` or something above needs it, else None."""
    found = None
    if survey or job.dictionaries or job.recipe_pending:
        found = shapes, layouts = survey_layers(model, tuple(model.input_contract.size), job.layouts)
        if job.dictionaries:
            check_dictionary_layers(job.dictionaries, shapes, layouts)
        job.settle_recipe(layouts)
        job.settle_fit(lambda: takes_other_sizes(model, image_size(job, model.input_contract)))
    if not job.resize_to_contract:
        check_input_size(model, image_size(job, model.input_contract))
    return found


def check_model_survey(job: VisualizeJob, model) -> None:
    """Before any file (transparency, whose FeatureViz is made later): the model takes its own input size and each
    declared layout fits its layer; one line otherwise."""
    model_layouts(model, tuple(model.input_contract.size), job.layouts)


def layer_table(job: VisualizeJob) -> List[Tuple[str, Tuple[int, ...], Layout]]:
    """(name, output shape without the batch, layout) of every layer of the job's model with a tensor output, in
    forward order, at the model's input size (``--list-layers``)."""
    model = open_run(job.model_choice, job.device, job.execution, job.brave).model
    shapes, layouts = survey_layers(model, tuple(model.input_contract.size), job.layouts)
    return [(name, shape, layouts[name]) for name, shape in shapes.items()]


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
    starts = np.stack([resize_center_crop(photo, h, round(h * 256 / 224)) for photo in read_photographs(job)])
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


def read_photographs(job: VisualizeJob) -> List[np.ndarray]:
    """The start images as (H, W, 3) uint8 RGB, what each file shows; a file that cannot be read is a one-line
    UsageError naming start_images."""
    try:
        return [load_image_rgb(path) for path in job.start_images]
    except UsageError as exc:
        raise UsageError(f"start_images: {exc}", "start_images") from None


def image_size(job: VisualizeJob, contract: InputContract) -> Tuple[int, int]:
    """(h, w): the job's size, else the model's input size."""
    return (job.size, job.size) if job.size is not None else tuple(contract.size)


def check_input_size(model, size) -> None:
    """resize_to_contract=False: the model must take images of ``size`` (H, W) as they are (a dry forward pass)."""
    try:
        layer_shapes(model, tuple(size))
    except (AssertionError, RuntimeError) as exc:  # torchvision's and timm's size asserts among them
        raise UsageError(f"resize_to_contract=False: the model cannot take {size[0]}x{size[1]} images "
                         f"({str(exc).splitlines()[0]}); resize them, or give size "
                         f"{model.input_contract.size[0]}", "resize_to_contract=False", "size") from None


def warn_if_too_few_steps(recipe: Optional[str], steps: int) -> None:
    if recipe is not None and steps < RECIPES[recipe].min_steps:
        log.warning("--recipe %s was measured at %d steps or more; this run takes %d",
                    recipe, RECIPES[recipe].min_steps, steps)


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


def run_transparent(job: VisualizeJob, context: RunContext) -> List[str]:
    """Check the outputs, ``render_transparent``, write the RGBA PNG and its two composites per threshold, the
    background (when there is one) and the side files; returns the files written."""
    kwargs = alpha_kwargs(job, context.model)
    paths = alpha_paths(job)
    bg_path = background_path(job) if kwargs["background"] != "none" else None
    context.check_outputs([p for group in paths.values() for p in group.values()] + ([bg_path] if bg_path else [])
                          + side_paths(job))
    result = render_transparent(context.model, device=context.device, show_progress=job.progress, **kwargs)
    return write_transparent(job, context, kwargs, result, paths, bg_path)
