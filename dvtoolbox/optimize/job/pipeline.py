"""Running an optimize_image job: ``run_job(job)``, everything below the command line.

Open the run (``run.context.open_run``: device, execution, model; this rank's GPU under torchrun), settle the data
size / mean / channel swap from the model's input contract (or the job's overrides) and survey the layers, check
the unit against the layer's shape and the outputs against the overwrite rule *before* any work, make x0, run the
loop batch by batch with the context's programs (a layer's batches share one compiled step), write. A batch's files
are written by background threads while the next batch runs (``outputs``); a unit enters the run summary once all
its files are complete.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from dvtoolbox.device import Execution
from dvtoolbox.errors import UsageError
from dvtoolbox.io.atomic import remove_stale_temps
from dvtoolbox.models.capture import resolve_layer
from dvtoolbox.models.layouts import UNKNOWN, Layout, canonical_shape, survey_layers
from dvtoolbox.models.pixel_space import load_mean
from dvtoolbox.dictionaries.binding import check_dictionary_layers
from dvtoolbox.dictionaries.tap import attach_checked
from dvtoolbox.objectives import check_layers
from dvtoolbox.optimize import summary
from dvtoolbox.run import distributed
from dvtoolbox.optimize.job.outputs import (WRITER_THREADS, collect_writes, finish_summary, plan_outputs,
                                            resolved_settings, run_settings, submit_writes, update_summary,
                                            write_index)
from dvtoolbox.optimize.job.settings import IMAGE_DTYPES, OptimizeJob
from dvtoolbox.optimize.loop import optimize
from dvtoolbox.optimize.params import FindParams
from dvtoolbox.optimize.results import FindResults
from dvtoolbox.optimize.start import initial_x
from dvtoolbox.run.units import batches, is_single_unit, parse_channels
from dvtoolbox.run.context import RunContext, open_run
from dvtoolbox.run.ranks import Rank, current_rank

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """A job's run context with its pixel space and layers resolved: data_size (H, W), mean (3, H, W) 0..255 in
    the model's channel order, channel_swap_to_rgb, each layer's output shape (without the batch) and layout."""

    context: RunContext
    data_size: Tuple[int, int]
    mean: np.ndarray
    channel_swap_to_rgb: Tuple[int, ...]
    shapes: Dict[str, Tuple[int, ...]]
    layouts: Dict[str, Layout]

    @property
    def model(self) -> nn.Module:
        return self.context.model

    @property
    def device(self) -> torch.device:
        return self.context.device

    @property
    def execution(self) -> Execution:
        return self.context.execution


def prepare(job: OptimizeJob, rank: Rank = Rank()) -> Prepared:
    """Open the job's run (this rank's GPU under torchrun) and settle data size, mean, channel swap and layers."""
    context = open_run(job.model_choice, job.device, job.execution, job.brave,
                       rank.local_rank if rank.is_distributed else None)
    contract = context.model.input_contract
    data_size = tuple(job.data_size) if job.data_size is not None else tuple(contract.size)
    mean = contract.mean_image(data_size) if job.mean == "model" else load_mean(job.mean, data_size)
    swap = tuple(job.channel_swap_to_rgb) if job.channel_swap_to_rgb is not None else contract.channel_swap_to_rgb
    if sorted(swap) != list(range(mean.shape[0])):
        raise UsageError(f"channel_swap_to_rgb must be a permutation of {tuple(range(mean.shape[0]))}, got {swap}",
                         "channel_swap_to_rgb")
    if job.params.push_layer in job.dictionaries:  # its latents become the push layer's units
        attach_push_dictionary(job, context.model, data_size)
    shapes, layouts = survey_layers(context.model, data_size, job.layouts, setting="data_size")
    return Prepared(context, data_size, mean, swap, shapes, layouts)


def attach_push_dictionary(job: OptimizeJob, model, data_size) -> None:
    """The dictionary that push_layer names, as a layer of that name (``dictionaries.tap``), checked against its
    layer first."""
    name = job.params.push_layer
    attach_checked(model, {name: job.dictionaries[name]}, data_size, job.layouts, "data_size")


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
    rank = current_rank()
    prep = prepare(job, rank)
    single = is_single_unit(job.unit_spec) and not job.resume and not rank.is_distributed
    job = replace(job, params=resolve_token(job.params, prep, job.push_token), push_token=None)
    shape3d = check_unit(job.params, prep, check_channel=single)
    objective = job.parsed_objective
    if objective is not None:
        check_layers(objective, prep.model)
    check_dictionary_layers(job.dictionaries, prep.shapes, prep.layouts)
    channels = parse_channels(int(job.unit_spec) if single else job.unit_spec, shape3d[0])
    mine = [job.params.with_unit(c) for c in channels][rank.rank::rank.world]
    settings = run_settings(job, prep)
    summary_file = summary.summary_path(job.output_prefix, job.params.push_layer)
    if job.resume:  # a damaged summary or rank part: one line before any work, nothing redone or written
        summary.check_resumable(job.output_prefix, job.params.push_layer, settings, shape3d[0])
        remove_stale_temps(summary_file)
        remove_stale_temps(summary.summary_path(job.output_prefix, job.params.push_layer, rank.rank))
    elif not single:  # another run's summary is not replaced without brave
        prep.context.check_outputs([summary_file])
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
                               layouts=prep.layouts, programs=prep.context.programs)[:len(group)]
            written += collect_writes(pending, entries)
            if pending and not single:
                update_summary(job, settings, entries, rank)
            pending = submit_writes(pool, job, group, results, prefixes, prep, config)
            all_results += results
        written += collect_writes(pending, entries)
        if pending and not single:
            update_summary(job, settings, entries, rank)
    if not single:
        written.append(finish_summary(job, settings, entries, prep.device, rank))
        if rank.rank == 0:
            write_index(job)
    return all_results, written



def padded_batch(group: Sequence[FindParams], batch_size: int, execution: Execution, n_units: int) -> list:
    """``group`` as the loop runs it: for a compiled engine (one graph per batch size, compiled in minutes) a short
    last batch of a many-batch run is filled up with copies of its last unit, whose results are dropped (the
    images of a batch are independent); otherwise the group itself."""
    group = list(group)
    if execution.compiled and n_units > batch_size and len(group) < batch_size:
        return group + [group[-1]] * (batch_size - len(group))
    return group



def layer_table(prep: Prepared) -> List[Tuple[str, Tuple[int, ...], Layout]]:
    """(name, output shape without the batch, layout) of every layer with a tensor output, in forward order."""
    return [(name, shape, prep.layouts.get(name, Layout(UNKNOWN))) for name, shape in prep.shapes.items()]
