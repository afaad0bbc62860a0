"""One find_max_acts run: ``FindMaxesJob`` (validated once) and ``run_find_maxes(job)``.

    job = FindMaxesJob(ModelChoice("tiny_test"), datadir="photos", outfile="maxes.pkl", n_top=9)
    summary = run_find_maxes(job)

The run: 1. the image list (filelist, folder tree or tar shards); 2. the model through the run context
(``model_run.open_exemplar_run``: device, precision, random weights seeded, the overwrite rule); 3. the layers, their
layouts and kinds; 4. the images in list order, decoded by DataLoader workers, a batch at a time through the model
to the deepest requested layer, each batch merged into the running top N on the model's device, checkpointed every
K batches; unreadable images skipped and counted (one warning at the end); 5. the tracker file, written atomically
(format: ``exemplars.tracker``); under torchrun each rank takes images ``rank::world`` and rank 0 merges
(``exemplars.checkpoint``). With ``hist_bins`` > 0 each unit's histogram is counted beside its top N, in bins fixed
before step 4 by a calibration pass over the first images of the list (``exemplars.calibration``; a resumed run
takes its checkpoint's bins).

Default layers: the original's (conv1..conv5, fc6, fc7, fc8, prob) that the model has; if it has none of them, every
``Conv2d`` and ``Linear`` layer whose layout is known.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Mapping, Optional, Tuple

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from dvtoolbox.device import Execution
from dvtoolbox.checks import check_int
from dvtoolbox.errors import UsageError
from dvtoolbox.exemplars.data import ImageList, default_workers, image_batches, preprocess_for, read_filelist, \
    scan_folder
from dvtoolbox.exemplars import shards
from dvtoolbox.exemplars.dictionary_layers import attach_dictionaries, describe as describe_dictionaries
from dvtoolbox.exemplars.derived import UnitDefinition, describe, group_arrays, plan_derived
from dvtoolbox.exemplars.calibration import calibrate, calibration_indices
from dvtoolbox.exemplars.checkpoint import (barrier, leave, list_digest, load_part,
                                            merge_parts, part_path, remove_parts, save_part, share_edges)
from dvtoolbox.exemplars.histogram import DEFAULT_BINS, MARGIN, MAX_BINS, MIN_BINS
from dvtoolbox.exemplars.tracker import MaxesTracker, kind_of, save_maxes
from dvtoolbox.io.atomic import remove_stale_temps
from dvtoolbox.models.capture import LayerCapture, forward_captured, named_layers, resolve_layer
from dvtoolbox.exemplars.model_run import open_exemplar_run
from dvtoolbox.models.layouts import Layout, canonical, canonical_shape, survey_layers, with_include_prefix
from dvtoolbox.run.context import ModelChoice
from dvtoolbox.run.ranks import Rank, current_rank

log = logging.getLogger(__name__)

ORIGINAL_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8", "prob")


@dataclass(frozen=True)
class FindMaxesJob:
    """What find_max_acts runs. datadir: the images' folder, or tar shards (a .tar file, a folder of them, a brace
    pattern: ``exemplars.shards``); filelist: the original's ``path [label]`` list (None: every image under
    datadir, or the shards' images); outfile: the tracker file; n_top: N per unit; layers: names (None: the
    default, see the module docstring); layouts: declared layouts {layer: Layout or text}; include_prefix: a token
    layer's units read over all its tokens, the class token too (then without a grid); workers: DataLoader
    workers (None: ``data.default_workers()``); progress: a tqdm bar (None: when stderr is a terminal);
    checkpoint_every: batches between checkpoints (0: none); resume: take up from the checkpoint (``checkpoint``);
    units: derived groups (``derived.parse_unit`` / ``parse_directions``), tracked after the layers (with units and
    no layers, only the units); hist_bins: bins of each unit's activation histogram (0: none;
    ``exemplars.histogram``); dictionaries: {name: LayerDictionary}, each a layer of that name whose units are its
    latents (``exemplars.dictionary_layers``; with dictionaries and no layers, only the dictionaries)."""

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
    checkpoint_every: int = 100
    resume: bool = False
    units: Tuple[UnitDefinition, ...] = ()
    hist_bins: int = DEFAULT_BINS
    dictionaries: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self):
        check_int("n_top", self.n_top, 1)
        check_int("hist_bins", self.hist_bins, 0, MAX_BINS)  # 0: no histogram
        if self.hist_bins == 1:
            raise UsageError(f"hist_bins must be 0 (no histogram) or {MIN_BINS} .. {MAX_BINS}, got 1", "hist_bins")
        check_int("batch_size", self.batch_size, 1)
        check_int("checkpoint_every", self.checkpoint_every, 0)  # 0: never
        if self.workers is not None:
            check_int("workers", self.workers, 0)
        if self.layers is not None:
            if isinstance(self.layers, str) or not self.layers or not all(isinstance(n, str) and n
                                                                          for n in self.layers):
                raise UsageError(f"layers must be one or more layer names, got {self.layers!r}", "layers")
            if len(set(self.layers)) != len(self.layers):
                raise UsageError(f"layers names a layer twice: {', '.join(self.layers)}", "layers")
            object.__setattr__(self, "layers", tuple(self.layers))
        Execution("eager", self.precision)  # validates the precision
        object.__setattr__(self, "units", tuple(self.units))


def read_images(job: FindMaxesJob) -> ImageList:
    """The filelist's images; without one, the tar shards datadir names (a .tar file, a brace pattern, a folder
    of .tar files: ``exemplars.shards``), else every image under the folder."""
    if job.filelist is not None:
        if shards.is_shard_name(job.datadir):
            raise UsageError(f"datadir {job.datadir} names tar shards, which carry their own image list and labels "
                             "(.cls): give no filelist", "filelist")
        return read_filelist(job.datadir, job.filelist)
    if shards.is_shard_name(job.datadir) or shards.holds_shards(job.datadir):
        return shards.read_shards(job.datadir)
    return scan_folder(job.datadir)


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
    if job.layers is not None:
        layers = job.layers
    elif job.dictionaries or job.units:
        layers = tuple(job.dictionaries)
    else:
        layers = default_layers(model, layouts)
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
    """Run ``job`` (see the module docstring). Returns a summary: images, unreadable, seconds, images_per_s (this
    process's images this session), layers {name: kind}."""
    images = read_images(job)
    shard = current_rank()
    context = open_exemplar_run(job.model, job.device, job.precision, job.brave,
                                local_rank=shard.local_rank if shard.is_distributed else None)
    context.check_outputs([job.outfile])
    model = context.model
    attach_dictionaries(model, job.dictionaries, job.layouts)
    plan = plan_layers(model, job)
    groups, reads = plan_derived(model, job.units, job.layouts, job.include_prefix)
    read_plan = {**{name: (r.layout, r.kind, r.shape[0]) for name, r in reads.items()}, **plan}  # layers captured
    identity = {"images": list_digest(images), "n_top": job.n_top, "model": context.choice.name,
                "layers": [[name, str(layout), kind, units] for name, (layout, kind, units) in plan.items()]}
    if groups:  # each group's definition (a matrix by its sha256; the .npy may move between runs)
        identity["derived"] = [{k: v for k, v in d.items() if k != "file"} for d in describe(groups)]
    if job.dictionaries:
        identity["dictionaries"] = describe_dictionaries(job.dictionaries)
    if job.hist_bins:
        identity["hist_bins"] = job.hist_bins  # absent when 0, so a version-1 checkpoint resumes without histograms
    tracker = MaxesTracker({**{name: (kind, units) for name, (_, kind, units) in plan.items()},
                            **{name: (g.kind, g.units) for name, g in groups.items()}}, job.n_top, context.device)
    part = part_path(job.outfile, shard)
    counts = _take_up(job, part, identity, shard, tracker)
    indices = list(range(shard.rank, len(images), shard.world))
    todo = indices[counts["images_done"]:]
    workers = default_workers() if job.workers is None else job.workers

    def tracked_values(x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The tracked layers' and groups' canonical values of a batch x (on any device)."""
        outputs = forward_layers(model, read_plan, x.to(context.device, non_blocking=True), job.precision)
        return {**{name: outputs[name] for name in plan}, **{name: g.values(outputs) for name, g in groups.items()}}

    calibration_seconds = start_histograms(job, tracker, images, model, tracked_values,
                                           {**{name: units for name, (_, _, units) in plan.items()},
                                            **{name: g.units for name, g in groups.items()}}, shard)
    log.info("find_max_acts: %d images (rank %d of %d: %d, %d done before), layers %s, N %d, batch %d, %d "
             "workers, %s", len(images), shard.rank, shard.world, len(indices), counts["images_done"],
             ", ".join(f"{n} ({k}, {u} units)" for n, (_, k, u) in plan.items()), job.n_top, job.batch_size, workers,
             context.device)
    start = time.perf_counter()
    first_error = ""

    def checkpoint(complete: bool) -> None:
        save_part(part, tracker.result(), images, identity, shard, counts["images_done"], counts["unreadable"],
                  counts["skipped_nan"] + tracker.skipped_nan, complete)

    with tqdm(total=len(indices), initial=counts["images_done"], unit="img", desc="find_max_acts",
              disable=None if job.progress is None else not job.progress) as bar:
        on_gpu = torch.device(context.device).type == "cuda"
        batches = (image_batches(images, todo, preprocess_for(model), job.batch_size, workers, pin_memory=on_gpu)
                   if todo else ())
        for number, (inputs, batch_indices, errors) in enumerate(batches, 1):
            ok = torch.tensor([not e for e in errors], dtype=torch.bool)
            if not ok.all():
                counts["unreadable"] += int((~ok).sum())
                first_error = first_error or next(e for e in errors if e)
            if ok.any():
                tracker.update(tracked_values(inputs if ok.all() else inputs[ok]),
                               batch_indices[ok].to(context.device))
            counts["images_done"] += len(batch_indices)
            bar.update(len(batch_indices))
            if job.checkpoint_every and number % job.checkpoint_every == 0 and counts["images_done"] < len(indices):
                checkpoint(complete=False)
    seconds = time.perf_counter() - start
    counts["skipped_nan"] += tracker.skipped_nan
    if counts["unreadable"]:
        log.warning("%d of %d images could not be read and were skipped%s", counts["unreadable"], len(indices),
                    f" (the first: {first_error})" if first_error else "")
    if counts["skipped_nan"]:
        log.warning("%d unit values were NaN and were not recorded", counts["skipped_nan"])
    meta = {"model": context.choice.name, "weights": recorded_weights(context.choice),
            "layouts": {name: str(layout) for name, (layout, _, _) in read_plan.items()},
            "include_prefix": job.include_prefix, "precision": job.precision}
    if groups:
        meta["derived"] = describe(groups)
    if job.dictionaries:
        meta["dictionaries"] = describe_dictionaries(job.dictionaries)
    if job.hist_bins:
        meta["hist_calibration"] = {"images": len(calibration_indices(len(images))), "margin": MARGIN}
    if shard.is_distributed:
        checkpoint(complete=True)
        barrier(shard)
        if shard.rank == 0:
            merged, totals = merge_parts(job.outfile, shard.world, identity)
            save_maxes(job.outfile, merged, images, {**meta, **totals}, group_arrays(groups))
            remove_parts([part_path(job.outfile, Rank(r, shard.world)) for r in range(shard.world)])
        barrier(shard)
        leave(shard)
    else:
        save_maxes(job.outfile, tracker.result(), images, {**meta, **counts}, group_arrays(groups))
        remove_parts([part])
    done_now = len(todo)
    summary = {"images": len(indices), "unreadable": counts["unreadable"], "seconds": seconds,
               "calibration_seconds": calibration_seconds,
               "images_per_s": done_now / seconds if seconds > 0 else float("inf"),
               "layers": {**{name: kind for name, (_, kind, _) in plan.items()},
                          **{name: g.kind for name, g in groups.items()}}}
    log.info("find_max_acts: %d images in %.1f s (%.1f images/s), %d unreadable; wrote %s", done_now, seconds,
             summary["images_per_s"], counts["unreadable"], job.outfile)
    return summary


def recorded_weights(choice: ModelChoice) -> Optional[str]:
    """The weights as the tracker file records them: a Caffe net's caffemodel, else the named model's ("default",
    a path, or None: random weights, drawn as ``model_run.open_exemplar_run`` seeds them)."""
    return choice.net_weights if choice.deploy_proto else choice.weights


def _take_up(job: FindMaxesJob, part: str, identity: dict, shard: Rank, tracker: MaxesTracker) -> Dict[str, int]:
    """The counts to start from: a checkpoint's (resume, restoring the tracker), else zeros. A checkpoint left
    by an interrupted run is not overwritten without brave."""
    counts = {"images_done": 0, "unreadable": 0, "skipped_nan": 0}
    remove_stale_temps(part)  # what a writer killed mid-write left (this rank's part is this process's alone)
    if shard.rank == 0:
        remove_stale_temps(job.outfile)
    if not os.path.exists(part):
        if job.resume:
            log.info("find_max_acts: no checkpoint %s to resume; starting from the first image", part)
        return counts
    if not job.resume:
        if not job.brave:
            raise UsageError(f"{part} holds the checkpoint of an interrupted run: continue it with resume, or start "
                             "again with brave", "resume", "brave")
        return counts
    meta, saved = load_part(part, identity, shard)
    tracker.restore(saved)
    for key in counts:
        counts[key] = int(meta.get(key, 0))
    log.info("find_max_acts: resuming %s after %d images", part, counts["images_done"])
    return counts


def start_histograms(job: FindMaxesJob, tracker: MaxesTracker, images: ImageList, model: nn.Module,
                     forward: Callable[[torch.Tensor], Dict[str, torch.Tensor]], units: Mapping[str, int],
                     shard: Rank) -> float:
    """Start the tracker's histograms (``job.hist_bins`` > 0) of the tracked layers and groups, ``units`` {name:
    units}: the bins of a restored checkpoint, else rank 0's calibration pass (``exemplars.calibration``) through
    ``forward`` (a batch -> {name: canonical values}), the same in every rank. Returns the seconds it took."""
    if not job.hist_bins:
        return 0.0
    start = time.perf_counter()
    restored = tracker.histogram_edges()
    edges = restored
    if edges is None and shard.rank == 0:
        chosen = calibration_indices(len(images))
        batches = image_batches(images, chosen, preprocess_for(model), job.batch_size, 0) if chosen else ()
        edges = calibrate(batches, forward, dict(units), job.hist_bins)
        log.info("find_max_acts: histogram bins from the first %d images", len(chosen))
    edges = share_edges(shard, edges, {name: (n, job.hist_bins + 1) for name, n in units.items()})
    if restored is None:
        tracker.start_histograms(edges)
    elif any(not np.array_equal(restored[name], edges[name]) for name in units):
        raise UsageError(f"the checkpoint of rank {shard.rank} holds other histogram bins than rank 0's: remove the "
                         "part files, or start again with brave", "resume", "brave")
    return time.perf_counter() - start


def forward_layers(model: nn.Module, plan: Mapping[str, Tuple[Layout, str, int]], x: torch.Tensor,
                   precision: str) -> Dict[str, torch.Tensor]:
    """The planned layers' canonical outputs for a batch, the forward stopped after the deepest of them."""
    capture = LayerCapture(model, list(plan), stop_when_complete=True)
    autocast = (torch.autocast(x.device.type, dtype=torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext())
    with torch.no_grad(), autocast:
        forward_captured(model, capture, x)
    return {name: canonical(capture.outputs[name], layout, name) for name, (layout, _, _) in plan.items()}
