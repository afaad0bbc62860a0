"""One find_max_acts run: ``FindMaxesJob`` (validated once) and ``run_find_maxes(job)``.

    job = FindMaxesJob(ModelChoice("tiny_test"), datadir="photos", outfile="maxes.pkl", n_top=9)
    summary = run_find_maxes(job)

The run: 1. the image list (filelist or folder tree); 2. the model through the run context (``open_run``: device,
precision, the overwrite rule); 3. the layers, their layouts and kinds; 4. the images in list order, decoded by
DataLoader workers, a batch at a time through the model to the deepest requested layer, each batch merged into the
running top N on the model's device; unreadable images skipped and counted (one warning at the end); 5. the tracker
file, written atomically (format: ``exemplars.tracker``).

Default layers: the original's (conv1..conv5, fc6, fc7, fc8, prob) that the model has; if it has none of them, every
``Conv2d`` and ``Linear`` layer whose layout is known.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Tuple

import torch
from torch import nn
from tqdm import tqdm

from dvtoolbox.device import Execution
from dvtoolbox.errors import UsageError
from dvtoolbox.exemplars.data import ImageList, default_workers, image_batches, preprocess_for, read_filelist, \
    scan_folder
from dvtoolbox.exemplars.tracker import MaxesTracker, kind_of, save_maxes
from dvtoolbox.models.capture import LayerCapture, forward_captured, named_layers, resolve_layer
from dvtoolbox.models.layouts import Layout, canonical, canonical_shape, survey_layers, with_include_prefix
from dvtoolbox.run.context import ModelChoice, open_run

log = logging.getLogger(__name__)

ORIGINAL_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8", "prob")


def _is_count(value, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


@dataclass(frozen=True)
class FindMaxesJob:
    """What find_max_acts runs. datadir: the images' folder; filelist: the original's ``path [label]`` list
    (None: every image under datadir); outfile: the tracker file; n_top: N per unit; layers: names (None: the
    default, see the module docstring); layouts: declared layouts {layer: Layout or text}; include_prefix: a token
    layer's units read over all its tokens, the class token too (then without a grid); workers: DataLoader
    workers (None: ``data.default_workers()``); progress: a tqdm bar (None: when stderr is a terminal)."""

    model: ModelChoice
    datadir: str
    outfile: str
    filelist: Optional[str] = None
    n_top: int = 9
    layers: Optional[Tuple[str, ...]] = None
    batch_size: int = 32
    workers: Optional[int] = None
    device: Optional[str] = None
    precision: str = "float32"
    brave: bool = False
    layouts: Mapping[str, object] = field(default_factory=dict)
    include_prefix: bool = False
    progress: Optional[bool] = None

    def __post_init__(self):
        if not _is_count(self.n_top, 1):
            raise UsageError(f"n_top must be an integer >= 1, got {self.n_top!r}", "n_top")
        if not _is_count(self.batch_size, 1):
            raise UsageError(f"batch_size must be an integer >= 1, got {self.batch_size!r}", "batch_size")
        if self.workers is not None and not _is_count(self.workers, 0):
            raise UsageError(f"workers must be an integer >= 0, got {self.workers!r}", "workers")
        if self.layers is not None:
            if isinstance(self.layers, str) or not self.layers or not all(isinstance(n, str) and n
                                                                          for n in self.layers):
                raise UsageError(f"layers must be one or more layer names, got {self.layers!r}", "layers")
            if len(set(self.layers)) != len(self.layers):
                raise UsageError(f"layers names a layer twice: {', '.join(self.layers)}", "layers")
            object.__setattr__(self, "layers", tuple(self.layers))
        Execution("eager", self.precision)  # validates the precision


def read_images(job: FindMaxesJob) -> ImageList:
    return read_filelist(job.datadir, job.filelist) if job.filelist is not None else scan_folder(job.datadir)


def default_layers(model: nn.Module, layouts: Mapping[str, Layout]) -> Tuple[str, ...]:
    """The original's default layers that ``model`` has; else its Conv2d and Linear layers of known layout."""
    names = named_layers(model)
    original = tuple(n for n in ORIGINAL_LAYERS if n in names and n in layouts)
    if original:
        return original
    found = tuple(n for n, m in names.items() if isinstance(m, (nn.Conv2d, nn.Linear))
                  and n in layouts and layouts[n].kind != "unknown")
    if not found:
        raise UsageError("layers: the model has none of the original's layers (conv1..conv5, fc6..fc8, prob) and no Conv2d "
                         "or Linear layer: name the layers (see --list-layers)", "layers")
    return found


def plan_layers(model: nn.Module, job: FindMaxesJob) -> Dict[str, Tuple[Layout, str, int]]:
    """{layer: (layout, kind, units)} for the job's layers (unknown names and layouts: one-line UsageError)."""
    shapes, layouts = survey_layers(model, tuple(model.input_contract.size), dict(job.layouts), "size")
    layers = job.layers if job.layers is not None else default_layers(model, layouts)
    plan = {}
    for name in layers:
        resolve_layer(model, name)  # an unknown name lists the valid ones
        if name not in shapes:
            raise UsageError(f"layers: {name!r} produces no tensor in a forward pass; choose another", "layers")
        layout = with_include_prefix(layouts[name], job.include_prefix)
        units = canonical_shape(shapes[name], layout, name)[0]
        plan[name] = (layout, kind_of(layout), units)
    return plan


def run_find_maxes(job: FindMaxesJob) -> dict:
    """Run ``job`` (see the module docstring). Returns a summary: images, unreadable, seconds, images_per_s,
    layers {name: kind}."""
    images = read_images(job)
    context = open_run(job.model, job.device, Execution("eager", job.precision), job.brave)
    context.check_outputs([job.outfile])
    model = context.model
    plan = plan_layers(model, job)
    preprocess = preprocess_for(model)
    tracker = MaxesTracker({name: (kind, units) for name, (_, kind, units) in plan.items()}, job.n_top,
                           context.device)
    workers = default_workers() if job.workers is None else job.workers
    log.info("find_max_acts: %d images, layers %s, N %d, batch %d, %d workers, %s", len(images),
             ", ".join(f"{n} ({k}, {u} units)" for n, (_, k, u) in plan.items()), job.n_top, job.batch_size, workers,
             context.device)
    unreadable, first_error, done = 0, "", 0
    start = time.perf_counter()
    with tqdm(total=len(images), unit="img", disable=None if job.progress is None else not job.progress,
              desc="find_max_acts") as bar:
        for inputs, indices, errors in image_batches(images, range(len(images)), preprocess, job.batch_size,
                                                     workers):
            ok = torch.tensor([not e for e in errors], dtype=torch.bool)
            if not ok.all():
                unreadable += int((~ok).sum())
                first_error = first_error or next(e for e in errors if e)
            if ok.any():
                outputs = forward_layers(model, plan, inputs[ok].to(context.device), job.precision)
                tracker.update(outputs, indices[ok].to(context.device))
            done += len(indices)
            bar.update(len(indices))
    seconds = time.perf_counter() - start
    if unreadable:
        log.warning("%d of %d images could not be read and were skipped (the first: %s)", unreadable, len(images),
                    first_error)
    if tracker.skipped_nan:
        log.warning("%d unit values were NaN and were not recorded", tracker.skipped_nan)
    meta = {"images_done": done, "unreadable": unreadable, "model": context.choice.name,
            "layouts": {name: str(layout) for name, (layout, _, _) in plan.items()},
            "include_prefix": job.include_prefix, "precision": job.precision}
    save_maxes(job.outfile, tracker.result(), images, meta)
    summary = {"images": len(images), "unreadable": unreadable, "seconds": seconds,
               "images_per_s": len(images) / seconds if seconds > 0 else float("inf"),
               "layers": {name: kind for name, (_, kind, _) in plan.items()}}
    log.info("find_max_acts: %d images in %.1f s (%.1f images/s), %d unreadable; wrote %s", len(images), seconds,
             summary["images_per_s"], unreadable, job.outfile)
    return summary


def forward_layers(model: nn.Module, plan: Mapping[str, Tuple[Layout, str, int]], x: torch.Tensor,
                   precision: str) -> Dict[str, torch.Tensor]:
    """The planned layers' canonical outputs for a batch, the forward stopped after the deepest of them."""
    capture = LayerCapture(model, list(plan), stop_when_complete=True)
    autocast = (torch.autocast(x.device.type, dtype=torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext())
    with torch.no_grad(), autocast:
        forward_captured(model, capture, x)
    return {name: canonical(capture.outputs[name], layout, name) for name, (layout, _, _) in plan.items()}
