"""An optimize_image job's outputs: which files each unit writes and whether they may be written (the overwrite
rule, ``--resume``), writing them in background threads, the run summary of a many-unit run, its index.html, and
what config.yaml and the summary record of the settings.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Dict, List, Sequence, Tuple

from dvtoolbox.errors import UsageError
from dvtoolbox.io.atomic import remove_stale_temps
from dvtoolbox.io.gallery import write_gallery
from dvtoolbox.io.outputs import check_writable
from dvtoolbox.models.pixel_space import mean_is_per_channel
from dvtoolbox.optimize import summary
from dvtoolbox.run import distributed
from dvtoolbox.optimize.job.settings import OptimizeJob
from dvtoolbox.optimize.params import FindParams
from dvtoolbox.optimize.results import FindResults
from dvtoolbox.run.ranks import Rank
from dvtoolbox.optimize.writers import output_prefix, planned_files, uses_results, write_results

if TYPE_CHECKING:
    from dvtoolbox.optimize.job.pipeline import Prepared

log = logging.getLogger(__name__)

WRITER_THREADS = 4  # a batch's files (JPEG, pickles, curve) are written while the next batch is optimised


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



def submit_writes(pool: ThreadPoolExecutor, job: OptimizeJob, group: Sequence[FindParams],
                   results: Sequence[FindResults], prefixes: Dict[int, str], prep: "Prepared", config) -> list:
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


def collect_writes(pending: list, entries: Dict[str, dict]) -> List[str]:
    """Wait for a batch's files (re-raising a writer's error); its units enter the summary only then."""
    written = []
    for q, res, prefix, future in pending:
        written += future.result()
        entries[str(q.push_channel)] = summary.unit_entry(res, prefix)
    return written



def write_index(job: OptimizeJob) -> None:
    """A many-unit run's last step (rank 0, after the summary merge): the folder's index.html. The page is a
    view of the results, so a failure to build it is logged, never raised."""
    folder = os.path.dirname(job.output_prefix) or "."
    try:
        log.info("index: %s", write_gallery(folder))
    except (UsageError, OSError) as exc:
        log.warning("index.html not written: %s (rebuild it with: python -m dvtoolbox.cli.gallery %s)", exc, folder)



def run_settings(job: OptimizeJob, prep: "Prepared") -> Dict[str, object]:
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



def update_summary(job: OptimizeJob, settings, entries, rank: Rank) -> None:
    if rank.is_distributed:
        summary.write_summary(summary.summary_path(job.output_prefix, job.params.push_layer, rank.rank), settings,
                              entries)
    else:
        path = summary.summary_path(job.output_prefix, job.params.push_layer)
        units = dict((summary.read_summary(path) or {}).get("units", {})) if job.resume else {}
        units.update(entries)
        summary.write_summary(path, settings, units)


def finish_summary(job: OptimizeJob, settings, entries, device, rank: Rank) -> str:
    path = summary.summary_path(job.output_prefix, job.params.push_layer)
    if not rank.is_distributed:
        if not os.path.exists(path):
            summary.write_summary(path, settings, entries)
        return path
    update_summary(job, settings, entries, rank)
    distributed.barrier_and_stop(device, rank)
    if rank.rank == 0:
        summary.merge_rank_parts(job.output_prefix, job.params.push_layer, settings)
    return path



def resolved_settings(job: OptimizeJob, prep: "Prepared") -> Dict[str, object]:
    """What the run actually used where the job said "the model's own" (config.yaml's ``resolved``)."""
    per_channel = mean_is_per_channel(prep.mean)
    return prep.context.resolved({
        "data-size": list(prep.data_size),
        "mean": list(per_channel) if per_channel is not None else job.mean,
        "channel-swap-to-rgb": list(prep.channel_swap_to_rgb),
        "channel-order": prep.model.input_contract.channel_order,
    })
