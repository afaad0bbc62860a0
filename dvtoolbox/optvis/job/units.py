"""A visualize job over many units: every channel of a layer or every latent of a dictionary, one image each
(``VisualizeJob(objective=NAME, units="all" | "0:64" | "3,5,9")``, ``visualize.py --objective NAME --units ...``).

NAME is a layer (unit k: the channel objective ``NAME:k``) or a dictionary given with ``dictionaries`` (unit k:
latent k's pre-activation, ``NAME#k``). The units are taken in the order given, ``batch`` at a time: one render per
batch, image n of the batch optimising its own unit (``NAME#k@n``), with the job's recipe, steps and seed (the
same seed for every batch, so with batch 1 each unit's image is the one a single run of its objective makes). The
batch shares the random transforms of each step, so a unit's image depends on the batch it was made in: the same
units, batch and seed give the same images, resumed or not, on any number of ranks.

Each unit writes what a single run with output prefix ``PREFIX_NAME_kkkk`` and batch 1 writes (its image per
threshold ``..._step<T>_0.png``, MACO's transparency map, ``_info.txt``, then ``_config.yaml`` last), with the unit's
value on each recorded image (its objective on the image as recorded, fitted to the model's input as the run fed it,
no random transform) in info.txt, whose ``VisualizeUnit`` section the gallery (``io.gallery``) reads; at the end the
folder's ``index.html``. ``resume`` skips the batches whose units all have their files (config.yaml written last)
and refuses, before any work, a unit made with other settings; under torchrun rank r renders batches r, r + world,
... and rank 0 writes the page after every rank has finished.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import yaml

from dvtoolbox.errors import UsageError
from dvtoolbox.io.atomic import write_text_atomic
from dvtoolbox.io.gallery import check_index, write_gallery
from dvtoolbox.io.images import save_image
from dvtoolbox.models.capture import LayerCapture, forward_captured
from dvtoolbox.models.layouts import canonical_shape
from dvtoolbox.objectives import INPUT, Activations, Objective, create_objective
from dvtoolbox.run import distributed
from dvtoolbox.run.units import batches, parse_channels
from dvtoolbox.optvis.job.outputs import config_text, extra_images, extra_paths, image_paths, side_paths
from dvtoolbox.optvis.job.parameterisations import PARAMETERISATIONS
from dvtoolbox.optvis.job.pipeline import image_size, render_kwargs, settle_with_model, warn_if_too_few_steps
from dvtoolbox.optvis.job.settings import VisualizeJob
from dvtoolbox.optvis.render import FeatureViz
from dvtoolbox.run.context import RunContext, open_run
from dvtoolbox.run.ranks import current_rank

log = logging.getLogger(__name__)

SECTION = "VisualizeUnit"   # info.txt's section that io.gallery reads
NOT_COMPARED = ("resume", "brave", "units", "config-file", "verbose", "device")  # flags a resumed run may change


@dataclass(frozen=True)
class UnitFiles:
    """Unit ``unit``'s files: ``images`` threshold -> path, ``extra`` (MACO's map) or None, info.txt, config.yaml."""

    unit: int
    prefix: str
    images: Dict[int, str]
    extra: Optional[str]
    info: str
    config: str

    @property
    def all(self) -> List[str]:
        return list(self.images.values()) + ([self.extra] if self.extra else []) + [self.info, self.config]

    @property
    def done(self) -> bool:
        return all(os.path.isfile(p) for p in self.all)


def unit_files(job: VisualizeJob, k: int) -> UnitFiles:
    """Unit k's files: a single run's with output prefix PREFIX_NAME_kkkk (NAME with every character but letters,
    digits, ``_ . -`` made ``_``) and batch 1."""
    prefix = f"{job.output_prefix}_{re.sub(r'[^A-Za-z0-9_.-]', '_', job.objective)}_{k:04d}"
    info, config = side_paths(job, prefix)
    extra = extra_paths(job, prefix, 1).get(0)
    return UnitFiles(k, prefix, {t: paths[0] for t, paths in image_paths(job, prefix, 1).items()}, extra, info,
                     config)


def unit_count(job: VisualizeJob, shapes, layouts) -> int:
    """How many units NAME has: the dictionary's latents, or the layer's channels read through its layout."""
    name = job.objective
    if name in job.dictionaries:
        return job.dictionaries[name].dictionary.n_latents
    if name not in shapes:
        raise UsageError(f"units: {name!r} is neither a layer of the model nor a dictionary given with "
                         f"--dictionary; --list-layers shows the layers", "units", "objective")
    return canonical_shape(shapes[name], layouts[name], name)[0]


def run_units(job: VisualizeJob, announce: Optional[Callable[[str], None]] = None) -> List[str]:
    """Run a whole-layer job (see the module docstring); returns the files this rank wrote."""
    rank = current_rank()
    context = open_run(job.model_choice, job.device, job.execution, job.brave,
                       rank.local_rank if rank.is_distributed else None)
    model = context.model
    shapes, layouts = settle_with_model(job, model, survey=True)
    units = parse_channels(job.units, unit_count(job, shapes, layouts), "units", "units")
    groups = [list(g) for g in batches(units, job.batch)]
    files = {k: unit_files(job, k) for k in units}
    mine = groups[rank.rank::rank.world]
    todo = [g for g in mine if not (job.resume and all(files[k].done for k in g))]
    if job.resume:
        check_same_settings(job, [files[k] for g in mine for k in g if files[k].done])
    else:
        context.check_outputs([p for g in todo for k in g for p in files[k].all])
    if rank.rank == 0:
        check_index(job.output_dir, job.brave)
    warn_if_too_few_steps(job.recipe_name, job.thresholds[-1])
    if job.auto_choice is not None:
        (announce or log.info)(job.auto_choice.line())
    log.info("%d units of %s in %d batches; this rank: %d batches, %d to do", len(units), job.objective, len(groups),
             len(mine), len(todo))
    distributed.start(context.device, rank)
    written = []
    for group in todo:
        written += render_group(job, context, group, [files[k] for k in group])
    distributed.barrier_and_stop(context.device, rank)
    if rank.rank == 0:
        written.append(write_gallery(job.output_dir, brave=job.brave))
    return written


def render_group(job: VisualizeJob, context: RunContext, group: Sequence[int],
                 files: Sequence[UnitFiles]) -> List[str]:
    """Render one batch of units (image n optimises unit group[n]) and write each unit's files."""
    model = context.model
    h, w = image_size(job, model.input_contract)
    fv = FeatureViz(model, batch_objective(job, group), fit=job.fit, resize_to_contract=job.resize_to_contract,
                    layouts=job.layouts, programs=context.programs)
    param_f = PARAMETERISATIONS[job.param](job, model.input_contract, h, w, batch=len(group))
    start = time.perf_counter()
    images = fv.visualize(param_f, device=context.device, show_progress=job.progress, execution=context.execution,
                          **render_kwargs(job))
    seconds = time.perf_counter() - start
    terms = [create_objective(job.unit_objective(k), dictionaries=job.dictionaries, model=model) for k in group]
    values = [term_values(fv, terms, batch) for batch in images]          # [threshold][n]
    extras = extra_images(param_f) if any(unit.extra for unit in files) else None
    written = []
    for n, (k, unit) in enumerate(zip(group, files)):
        for t, batch in zip(job.thresholds, images):
            save_image(unit.images[t], batch[n])
        if unit.extra is not None:
            save_image(unit.extra, extras[n])
            written.append(unit.extra)
        history = [float(v[n]) for v in values]
        write_text_atomic(unit.info, unit_info_text(job, k, history, seconds, len(group), context.device))
        record = {"name": job.objective, "unit": k, "objective": job.unit_objective(k), "batch": list(group),
                  "values": dict(zip(job.thresholds, history))}
        write_text_atomic(unit.config, config_text(job, context, images[0].shape[1:3], unit=record))
        written += list(unit.images.values()) + [unit.info, unit.config]
    return written


def batch_objective(job: VisualizeJob, group: Sequence[int]) -> Objective:
    """The sum over n of unit group[n]'s objective on image n (``NAME#k@n`` / ``NAME:k@n``), summed in one flat
    loop (a chain of ``+`` would nest a call per unit)."""
    terms = [create_objective(f"{job.unit_objective(k)}@{n}", dictionaries=job.dictionaries)
             for n, k in enumerate(group)]
    reads = [t.layers for t in terms]
    layers = None if any(r is None for r in reads) else frozenset().union(*reads)
    what = f"{job.objective} unit {group[0]}" if len(group) == 1 else f"{job.objective} units {group[0]}..{group[-1]}"
    return Objective(lambda acts: torch.stack([t(acts) for t in terms]).sum(), what, what, layers)


@torch.no_grad()
def term_values(fv: FeatureViz, terms: Sequence[Objective], images: np.ndarray) -> List[float]:
    """Each image's own objective (terms[n] on images[n], (N, H, W, 3) RGB in [0, 1]) on the image as recorded,
    fitted to the model's input as the run fed it, with no random transform."""
    device = next(iter(fv.model.parameters()), torch.empty(0)).device
    image = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).to(device)
    x = fv.model_input(image, lambda t, generator: t, None)
    reads = [t.layers for t in terms]
    names = set().union(*reads) - {INPUT} if all(r is not None for r in reads) else None
    capture = LayerCapture(fv.model, names if names is not None else fv.layouts.keys(), stop_when_complete=True)
    forward_captured(fv.model, capture, x)
    outputs, labels = dict(capture.outputs), getattr(fv.contract, "labels", None)
    return [float(term(Activations({**{k: v[n:n + 1] for k, v in outputs.items()}, INPUT: image[n:n + 1]},
                                   labels, fv.layouts))) for n, term in enumerate(terms)]


def unit_info_text(job: VisualizeJob, k: int, values: Sequence[float], seconds: float, batch: int, device) -> str:
    """A unit's info.txt: its objective, device, its batch's seconds, its value at each threshold (module
    docstring), and the ``VisualizeUnit`` section the gallery reads."""
    lines = [f"objective: {job.unit_objective(k)}", f"device: {device}",
             f"seconds: {seconds:.2f} (its batch of {batch})"]
    lines += [f"value at step {t}: {v:.6g}" for t, v in zip(job.thresholds, values)]
    lines += [f"{SECTION}:", f"  layer: {job.objective}", f"  unit: {k}", f"  seed: {job.seed}",
              f"  value: {values[-1]!r}", f"  step: {job.thresholds[-1]}", f"  recipe: {job.recipe_name or 'lucid'}"]
    return "\n".join(lines) + "\n"


def check_same_settings(job: VisualizeJob, done: Sequence[UnitFiles]) -> None:
    """resume: every finished unit's config.yaml records the flags of this job (but NOT_COMPARED); one line
    otherwise, before any work."""
    mine = _compared(job.config)
    for unit in done:
        try:
            with open(unit.config, encoding="utf-8") as handle:
                theirs = _compared(yaml.safe_load(handle) or {})
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise UsageError(f"resume: cannot read {unit.config} ({exc}); remove the unit's files to redo it",
                             "resume") from None
        differ = sorted(key for key in set(mine) | set(theirs) if mine.get(key) != theirs.get(key))
        if differ:
            key = differ[0]
            raise UsageError(f"resume: unit {unit.unit} in {job.output_dir} was made with other settings ({key}: "
                             f"{theirs.get(key)!r} there, {mine.get(key)!r} now); resume with the same flags or give "
                             "another output prefix", "resume")


def _compared(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in NOT_COMPARED + ("resolved", "dvtoolbox-version")}
