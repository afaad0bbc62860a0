"""One optimize_image job, resolved and validated: which model, which pixel space, which unit(s), where to write.

``run_job(job)`` is the whole pipeline below the command line: build the model on its device, settle the data
size / mean / channel swap from the model's input contract (or the job's overrides), check the unit against the
layer's shape and the outputs against the overwrite rule *before* any work, make x0, run the loop, write. A batch's
files are written by background threads while the next batch runs; a unit enters the run summary once all its files
are complete.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from dvtoolbox.checks import MAX_IMAGE_SIDE, check_int, check_sequence
from dvtoolbox.device import Execution, configure_precision, resolve_device
from dvtoolbox.errors import UsageError
from dvtoolbox.io.atomic import remove_stale_temps
from dvtoolbox.io.gallery import write_gallery
from dvtoolbox.io.outputs import check_writable
from dvtoolbox.models.capture import resolve_layer
from dvtoolbox.models.layouts import UNKNOWN, Layout, canonical_shape, survey_layers
from dvtoolbox.models.load import load_model
from dvtoolbox.models.pixel_space import MeanSpec, load_mean, mean_is_per_channel
from dvtoolbox.models.registry import DEFAULT_MODEL, create_model
from dvtoolbox.objectives import Objective, check_layers, create_objective
from dvtoolbox.optimize import distributed, summary
from dvtoolbox.optimize.loop import STATS_EVERY, optimize
from dvtoolbox.optimize.params import FindParams
from dvtoolbox.optimize.results import FindResults
from dvtoolbox.optimize.start import initial_x
from dvtoolbox.optimize.units import UnitSpec, batches, is_single_unit, parse_channels
from dvtoolbox.optimize.writers import output_prefix, planned_files, uses_results, write_results

log = logging.getLogger(__name__)

WRITER_THREADS = 4  # a batch's files (JPEG, pickles, curve) are written while the next batch is optimised
IMAGE_DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass
class OptimizeJob:
    """Everything one run needs. None for data_size / mean / channel_swap_to_rgb means "the model's own".

    model: a name, ``package.module:factory``, a saved-module file (``models.load.load_model``) or an nn.Module;
    weights: the named model's ("default", a path, None for random). A module without an input contract is given
    RGB in [0, 1] normalised by input_mean / input_std (ImageNet's by default; 0..1 scale) at data_size (224).
    layouts: where some layers' channels are (``{"name": "NHWC"}``) over what is inferred (``models.layouts``).
    push_token: push a token layer's unit at this token (its index among all tokens) instead of at push_spatial.
    """

    params: FindParams
    model: Union[str, nn.Module] = DEFAULT_MODEL
    weights: Union[None, str] = "default"
    input_mean: Optional[Tuple[float, float, float]] = None
    input_std: Optional[Tuple[float, float, float]] = None
    layouts: Dict[str, str] = field(default_factory=dict)
    push_token: Optional[int] = None
    deploy_proto: Optional[str] = None
    net_weights: Optional[str] = None
    mean: MeanSpec = "model"
    channel_swap_to_rgb: Optional[Tuple[int, ...]] = None
    data_size: Optional[Tuple[int, int]] = None
    device: Optional[str] = None
    output_prefix: str = "optimize_results/opt"
    output_template: str = "%(p.push_layer)s_%(p.push_channel)04d_%(p.rand_seed)d"
    brave: bool = False
    skipbig: bool = False
    progress: bool = False
    config: Dict[str, object] = field(default_factory=dict)
    channels: Optional[UnitSpec] = None
    batch_size: int = 1
    resume: bool = False
    objective: Optional[str] = None  # an optvis objective expression whose gradient replaces the unit's
    allow_tf32: bool = False  # the same as precision "tf32"
    image_dtype: str = "float64"  # the image state: "float64" as the original, or "float32" (faster, see the doc)
    engine: str = "auto"  # how the network step runs (dvtoolbox.device.Execution); auto: the device's measured best
    precision: str = "float32"  # of the network: true float32 (the original's), "tf32" or "bf16" (see the doc)
    stats_every: int = STATS_EVERY  # iterations between copies of the statistics to the host
    parsed_objective: Optional[Objective] = field(init=False, repr=False, default=None)

    def __post_init__(self):
        if self.image_dtype not in IMAGE_DTYPES:
            raise UsageError(f"image_dtype must be one of {', '.join(IMAGE_DTYPES)}, got {self.image_dtype!r}")
        if self.allow_tf32 and self.precision not in ("float32", "tf32"):
            raise UsageError(f"allow_tf32 cannot be combined with precision {self.precision} (allow_tf32 is precision "
                             "tf32)", "allow_tf32", "precision")
        self.execution  # validated now
        if isinstance(self.stats_every, bool) or not isinstance(self.stats_every, int) or self.stats_every < 1:
            raise UsageError(f"stats_every must be an integer >= 1, got {self.stats_every!r}", "stats_every")
        check_int("batch_size", self.batch_size, 1)
        if self.data_size is not None:
            for side in check_sequence("data_size", self.data_size, 2):
                check_int("data_size", side, 1, MAX_IMAGE_SIDE)
        if self.objective is not None:  # parsed once, here; its layers are checked once the model is built
            self.parsed_objective = create_objective(self.objective)

    @property
    def execution(self) -> Execution:
        """The engine and precision of the network step (``allow_tf32`` is precision tf32)."""
        return Execution(self.engine, "tf32" if self.allow_tf32 else self.precision)

    @property
    def unit_spec(self) -> UnitSpec:
        """The units to push: ``channels`` when given, else the params' single push_channel."""
        return self.params.push_channel if self.channels is None else self.channels

    @property
    def prefix_template(self) -> str:
        """The original's '<output-prefix>_<output-template>_'."""
        return f"{self.output_prefix}_{self.output_template}_"


@dataclass
class Prepared:
    """A job's model and pixel space, resolved."""

    model: nn.Module
    device: torch.device
    data_size: Tuple[int, int]
    mean: np.ndarray
    channel_swap_to_rgb: Tuple[int, ...]
    shapes: Dict[str, Tuple[int, ...]]
    layouts: Dict[str, Layout]
    execution: Execution = Execution("eager")  # the job's, resolved for the device


def build_model(job: OptimizeJob) -> nn.Module:
    """The job's network: a Caffe model when deploy_proto is set, else ``load_model(job.model)``."""
    if job.deploy_proto is not None or job.net_weights is not None:
        if job.deploy_proto is None or job.net_weights is None:
            raise UsageError("deploy_proto and net_weights go together: give both for a Caffe model", "deploy_proto",
                             "net_weights")
        return create_model("caffe:" + job.deploy_proto, weights=job.net_weights)
    return load_model(job.model, job.weights, job.input_mean, job.input_std, job.data_size)


def prepare(job: OptimizeJob, rank: distributed.Rank = distributed.Rank()) -> Prepared:
    """Build the model on its device (this rank's GPU under torchrun) and settle data size, mean, channel swap."""
    device = distributed.rank_device(resolve_device(job.device), rank)
    execution = job.execution.on(device)
    configure_precision(device, execution)
    model = build_model(job).to(device)
    model.requires_grad_(False)
    contract = model.input_contract
    data_size = tuple(job.data_size) if job.data_size is not None else tuple(contract.size)
    mean = contract.mean_image(data_size) if job.mean == "model" else load_mean(job.mean, data_size)
    swap = tuple(job.channel_swap_to_rgb) if job.channel_swap_to_rgb is not None else contract.channel_swap_to_rgb
    if sorted(swap) != list(range(mean.shape[0])):
        raise UsageError(f"channel_swap_to_rgb must be a permutation of {tuple(range(mean.shape[0]))}, got {swap}",
                         "channel_swap_to_rgb")
    try:
        shapes, layouts = survey_layers(model, data_size, job.layouts)
    except RuntimeError as exc:
        raise UsageError(f"data_size {data_size}: the model cannot take input of this size: "
                         f"{str(exc).splitlines()[0]}", "data_size") from None
    return Prepared(model, device, data_size, mean, swap, shapes, layouts, execution)


def unit_shape(prep: Prepared, layer: str) -> Tuple[int, int, int]:
    """The units of ``layer`` as (C, H, W), its channels read through its layout: (C, 1, 1) for an FC layer, a
    token layer's patch grid (C, h, w); a layer that holds no units is a UsageError."""
    if layer not in prep.shapes:
        raise UsageError(f"push_layer {layer!r} produces no tensor output; list_layers shows the pushable layers",
                         "push_layer", "list_layers")
    layout = prep.layouts.get(layer, Layout(UNKNOWN))
    shape = canonical_shape(prep.shapes[layer], layout, layer)
    if len(shape) == 1:
        return shape[0], 1, 1
    if len(shape) == 3:
        return tuple(shape)
    raise UsageError(f"push_layer {layer!r} has output shape {prep.shapes[layer]} ({layout}); only layers with "
                     "channels, (C,) or a grid, can be pushed", "push_layer")


def resolve_token(params: FindParams, prep: Prepared, token: Optional[int]) -> FindParams:
    """``params`` pushing the patch token ``token`` of a token layer: push_spatial its (y, x) on the grid."""
    if token is None:
        return params
    layer = params.push_layer
    layout = prep.layouts.get(layer, Layout(UNKNOWN))
    if layout.kind != "NTC" or layout.grid is None:
        raise UsageError(f"push_token {token}: layer {layer!r} is {layout}, not a token layer with a patch grid",
                         "push_token")
    tokens = prep.shapes[layer][0]
    if not 0 <= token < tokens:
        raise UsageError(f"push_token {token} is out of range: layer {layer!r} has {tokens} tokens "
                         f"(0..{tokens - 1})", "push_token")
    if token < layout.prefix:
        raise UsageError(f"push_token {token} is a class / register token of layer {layer!r} ({layout}); the DVT "
                         f"push works on the patch grid (tokens {layout.prefix}..{tokens - 1}); push a prefix token "
                         f"through objective, e.g. {layer}:{params.push_channel}:{token}", "push_token", "objective")
    y, x = divmod(token - layout.prefix, layout.grid[1])
    return replace(params, push_spatial=(y, x))


def check_unit(params: FindParams, prep: Prepared, check_channel: bool = True) -> Tuple[int, int, int]:
    """The push layer's units as (C, H, W) after checking the unit lies in them; bad units raise UsageError."""
    layer = params.push_layer
    resolve_layer(prep.model, layer)
    shape3d = unit_shape(prep, layer)
    if shape3d[1:] == (1, 1) and len(prep.shapes[layer]) == 1:
        if params.push_spatial != (0, 0):
            raise UsageError(f"push_spatial {params.push_spatial}: layer {layer!r} has no spatial dimensions "
                             f"(shape {prep.shapes[layer]}); push (0, 0) (None on the command line)", "push_spatial")
    elif params.push_spatial == (0, 0):
        log.warning("A unit on a conv layer (%s) is being optimized, but push_spatial is (0, 0), so the "
                    "upper-left unit is selected; to avoid edge effects push the centre, e.g. "
                    "push_spatial (%d, %d)", layer, shape3d[1] // 2, shape3d[2] // 2)
    if check_channel and params.push_channel >= shape3d[0]:
        raise UsageError(f"push_channel {params.push_channel} is out of range: layer {layer!r} has "
                         f"{shape3d[0]} channels (0..{shape3d[0] - 1})", "push_channel")
    y, x = params.push_spatial
    if y >= shape3d[1] or x >= shape3d[2]:
        raise UsageError(f"push_spatial {params.push_spatial} is out of range: layer {layer!r} is "
                         f"{shape3d[1]}x{shape3d[2]} (y in 0..{shape3d[1] - 1}, x in 0..{shape3d[2] - 1})",
                         "push_spatial")
    return tuple(shape3d)


def run_job(job: OptimizeJob) -> Tuple[List[FindResults], List[str]]:
    """Run one job end to end (this rank's share of its units); returns the results and the files written."""
    rank = distributed.current_rank()
    prep = prepare(job, rank)
    single = is_single_unit(job.unit_spec) and not job.resume and not rank.is_distributed
    job = replace(job, params=resolve_token(job.params, prep, job.push_token), push_token=None)
    shape3d = check_unit(job.params, prep, check_channel=single)
    objective = job.parsed_objective
    if objective is not None:
        check_layers(objective, prep.model)
    channels = parse_channels(int(job.unit_spec) if single else job.unit_spec, shape3d[0])
    mine = [job.params.with_unit(c) for c in channels][rank.rank::rank.world]
    settings = run_settings(job, prep)
    summary_file = summary.summary_path(job.output_prefix, job.params.push_layer)
    if job.resume:  # a damaged summary or rank part: one line before any work, nothing redone or written
        summary.check_resumable(job.output_prefix, job.params.push_layer, settings, shape3d[0])
        remove_stale_temps(summary_file)
        remove_stale_temps(summary.summary_path(job.output_prefix, job.params.push_layer, rank.rank))
    elif not single:  # another run's summary is not replaced without brave
        check_writable([summary_file], job.brave)
    todo, prefixes = plan_outputs(job, mine)
    distributed.start(prep.device, rank)
    all_results, written, entries = [], [], {}
    contract = prep.model.input_contract
    config = dict(job.config, resolved=resolved_settings(job, prep))
    with ThreadPoolExecutor(max_workers=WRITER_THREADS, thread_name_prefix="dvtoolbox-writer") as pool:
        pending = []
        for group in batches(todo, job.batch_size):
            padded = padded_batch(group, job.batch_size, prep.execution, len(todo))
            x0 = np.stack([initial_x(q.start_at, q.rand_seed, prep.mean) for q in padded])
            results = optimize(prep.model, padded, x0, prep.mean, shape3d, progress=job.progress,  # while the last
                               labels=contract.labels, label_layers=contract.label_layers,         # batch is written
                               objective=objective, state_dtype=IMAGE_DTYPES[job.image_dtype],
                               execution=prep.execution, stats_every=job.stats_every,
                               layouts=prep.layouts)[:len(group)]
            written += _collect_writes(pending, entries)
            if pending and not single:
                _update_summary(job, settings, entries, rank)
            pending = _submit_writes(pool, job, group, results, prefixes, prep, config)
            all_results += results
        written += _collect_writes(pending, entries)
        if pending and not single:
            _update_summary(job, settings, entries, rank)
    if not single:
        written.append(_finish_summary(job, settings, entries, prep.device, rank))
        if rank.rank == 0:
            _write_index(job)
    return all_results, written


def padded_batch(group: Sequence[FindParams], batch_size: int, execution: Execution, n_units: int) -> list:
    """``group`` as the loop runs it: for a compiled engine (one graph per batch size, compiled in minutes) a short
    last batch of a many-batch run is filled up with copies of its last unit, whose results are dropped (the
    images of a batch are independent); otherwise the group itself."""
    group = list(group)
    if execution.compiled and n_units > batch_size and len(group) < batch_size:
        return group + [group[-1]] * (batch_size - len(group))
    return group


def _submit_writes(pool: ThreadPoolExecutor, job: OptimizeJob, group: Sequence[FindParams],
                   results: Sequence[FindResults], prefixes: Dict[int, str], prep: Prepared, config) -> list:
    """Start writing a batch's files in the background: [(params, prefix, future of the files written)].
    A prefix known only from the results is checked against the overwrite rule here, before its files start."""
    pending = []
    for q, res in zip(group, results):
        prefix = prefixes.get(q.push_channel) or output_prefix(job.prefix_template, q, res)
        if q.push_channel not in prefixes:
            check_writable(planned_files(prefix, job.skipbig), job.brave)
        future = pool.submit(write_results, prefix, q, res, prep.mean, prep.channel_swap_to_rgb, job.skipbig, config)
        pending.append((q, res, prefix, future))
    return pending


def _collect_writes(pending: list, entries: Dict[str, dict]) -> List[str]:
    """Wait for a batch's files (re-raising a writer's error); its units enter the summary only then."""
    written = []
    for q, res, prefix, future in pending:
        written += future.result()
        entries[str(q.push_channel)] = summary.unit_entry(res, prefix)
    return written


def _write_index(job: OptimizeJob) -> None:
    """A many-unit run's last step (rank 0, after the summary merge): the folder's index.html. The page is a
    view of the results, so a failure to build it is logged, never raised."""
    folder = os.path.dirname(job.output_prefix) or "."
    try:
        log.info("index: %s", write_gallery(folder))
    except (UsageError, OSError) as exc:
        log.warning("index.html not written: %s (rebuild it with: python -m dvtoolbox.cli.gallery %s)", exc, folder)


def plan_outputs(job: OptimizeJob, mine: Sequence[FindParams]) -> Tuple[List[FindParams], Dict[int, str]]:
    """The units still to do and their prefixes; refuses, before any work, to overwrite without --brave.
    With --resume, units whose every file exists are skipped and incomplete ones are redone."""
    if uses_results(job.prefix_template):
        if job.resume:
            raise UsageError("resume needs an output_template without r. fields (file names must be known "
                             "before the run)", "resume", "output_template")
        return list(mine), {}
    prefixes = {q.push_channel: output_prefix(job.prefix_template, q) for q in mine}
    todo = []
    for q in mine:
        files = planned_files(prefixes[q.push_channel], job.skipbig)
        if job.resume and all(os.path.exists(f) for f in files):
            continue
        if job.resume:
            for f in files:
                remove_stale_temps(f)
        check_writable(files, job.brave or job.resume)
        todo.append(q)
    if job.resume:
        log.info("resume: %d of %d units already complete, %d to do", len(mine) - len(todo), len(mine), len(todo))
    return todo, prefixes


def run_settings(job: OptimizeJob, prep: Prepared) -> Dict[str, object]:
    """What must match for --resume to continue a folder: everything but the units and the run mechanics."""
    params = {k: v for k, v in dataclasses.asdict(job.params).items() if k not in ("push_channel", "push_unit")}
    params["push_spatial"] = list(params["push_spatial"])
    resolved = resolved_settings(job, prep)
    for mechanics in ("device", "engine"):  # where and how fast, not what
        resolved.pop(mechanics)
    if resolved["precision"] == "float32":  # only then, so that summaries of true-float32 runs stay as they were
        resolved.pop("precision")
    settings = {"params": params, "model": resolved, "output_template": job.output_template, "skipbig": job.skipbig}
    if job.objective is not None:  # only then, so that summaries of unit runs stay as they were
        settings["objective"] = job.objective
    return settings


def _update_summary(job: OptimizeJob, settings, entries, rank: distributed.Rank) -> None:
    if rank.is_distributed:
        summary.write_summary(summary.summary_path(job.output_prefix, job.params.push_layer, rank.rank), settings,
                              entries)
    else:
        path = summary.summary_path(job.output_prefix, job.params.push_layer)
        units = dict((summary.read_summary(path) or {}).get("units", {})) if job.resume else {}
        units.update(entries)
        summary.write_summary(path, settings, units)


def _finish_summary(job: OptimizeJob, settings, entries, device, rank: distributed.Rank) -> str:
    path = summary.summary_path(job.output_prefix, job.params.push_layer)
    if not rank.is_distributed:
        if not os.path.exists(path):
            summary.write_summary(path, settings, entries)
        return path
    _update_summary(job, settings, entries, rank)
    distributed.barrier_and_stop(device, rank)
    if rank.rank == 0:
        summary.merge_rank_parts(job.output_prefix, job.params.push_layer, settings)
    return path


def resolved_settings(job: OptimizeJob, prep: Prepared) -> Dict[str, object]:
    """What the run actually used where the job said "the model's own" (saved in config.yaml)."""
    per_channel = mean_is_per_channel(prep.mean)
    return {
        "model": "caffe:" + job.deploy_proto if job.deploy_proto else
                 (job.model if isinstance(job.model, str) else type(job.model).__name__),
        "device": str(prep.device),
        "data-size": list(prep.data_size),
        "mean": list(per_channel) if per_channel is not None else job.mean,
        "channel-swap-to-rgb": list(prep.channel_swap_to_rgb),
        "channel-order": prep.model.input_contract.channel_order,
        "engine": prep.execution.engine,
        "precision": prep.execution.precision,
    }


def layer_table(prep: Prepared) -> List[Tuple[str, Tuple[int, ...], Layout]]:
    """(name, output shape without the batch, layout) of every layer with a tensor output, in forward order."""
    return [(name, shape, prep.layouts.get(name, Layout(UNKNOWN))) for name, shape in prep.shapes.items()]
