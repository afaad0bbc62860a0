"""One crop_max_patches run: ``CropJob`` (validated once) and ``run_crop_patches(job)``.

    job = CropJob(ModelChoice("tiny_test"), "maxes.npz", datadir="photos", outdir="out", layer="conv1",
                  what=("maxes", "info"), idx_begin=0, idx_end=4)
    paths = run_crop_patches(job)

The run: 1. the tracker file (``tracker.load_maxes``) and the layer's top N; 2. the image list: the one the tracker
file records, its paths under ``datadir`` (the dataset may have moved), or the filelist's, which must be the same
list line for line (the original's "Must be the same filelist used to produce the NetMaxTracker"; its pickle records
no paths, so there the filelist is required); 3. the request checked and every output planned against the overwrite
rule, and every image it needs checked to exist, before the model is loaded; 4. the model through the run context
(``model_run.open_exemplar_run``: random weights seeded as find_max_acts seeded them; the precision the
tracker file records unless one is given), the layer's layout as find_max_acts read it (the model's, ``layouts``
declared, the tracker's include_prefix) checked against the one the tracker file records (a derived group,
``exemplars.derived``: the layers it reads, its matrix from the file); 5. temporary files a killed run left beside
the planned outputs removed; ``unit_pages.write_unit_pages`` with each image's model input made by find_max_acts's
own preprocessing (``data.preprocess_for``), in the run's precision; 6. with ``"histogram"`` in ``what``, each
unit's activation histogram (``histogram_pages``; refused when the tracker file holds none); asked alone, it needs
neither the model nor the images.

Tar shards (``exemplars.shards``): the recorded list under the shards datadir names; ``shards.with_members`` finds
each drawn image's member again (step 3), and ``data.read_rgb`` reads it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import List, Mapping, Optional, Tuple

import torch

from dvtoolbox.device import Execution
from dvtoolbox.errors import UsageError
from dvtoolbox.exemplars import shards
from dvtoolbox.exemplars.data import ImageList, preprocess_for, read_filelist, read_rgb
from dvtoolbox.exemplars.dictionary_layers import attach_dictionaries, check_recorded
from dvtoolbox.exemplars.derived import derived_top, load_group, recorded_definition
from dvtoolbox.exemplars.histogram_pages import HISTOGRAM, planned_histogram_paths, write_histograms
from dvtoolbox.exemplars.model_run import open_exemplar_run, value_rtol
from dvtoolbox.exemplars.tracker import LayerMaxes, load_maxes
from dvtoolbox.exemplars.unit_pages import WHAT, TopN, check_request, planned_paths, write_unit_pages
from dvtoolbox.io.atomic import remove_stale_temps
from dvtoolbox.io.outputs import check_writable
from dvtoolbox.models.layouts import Layout, canonical_shape, survey_layers, with_include_prefix
from dvtoolbox.run.context import ModelChoice

log = logging.getLogger(__name__)


def _is_count(value, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


@dataclass(frozen=True)
class CropJob:
    """What crop_max_patches runs. nmt: the tracker file (dvtoolbox's or the original's maxes.pkl); datadir: the
    folder the image paths are relative to; filelist: the original's ``path [label]`` list (None: the tracker
    file's list; required for the original's pickle); outdir: where ``<layer>/unit_%04d/`` go; what: a subset of
    ``unit_pages.WHAT`` (maxes, deconv, deconv_norm, backprop, backprop_norm, info) and ``histogram_pages.HISTOGRAM``
    (histogram); idx_begin, idx_end: units
    idx_begin .. idx_end - 1 (idx_end None: the layer's last unit + 1); n_top: ranks 0 .. n_top - 1 (None: the
    tracker's N); layouts: declared layouts {layer: Layout} (as find_max_acts's --layout); precision: of the deconv
    and backprop passes, float32, tf32 or bf16 (None: the one the tracker file records, float32 for the original's
    pickle); dictionaries: {name: LayerDictionary} as find_max_acts had them (``exemplars.dictionary_layers``)."""

    model: ModelChoice
    nmt: str
    datadir: str
    outdir: str
    layer: str
    what: Tuple[str, ...]
    filelist: Optional[str] = None
    idx_begin: int = 0
    idx_end: Optional[int] = None
    n_top: Optional[int] = None
    device: Optional[str] = None
    brave: bool = False
    layouts: Mapping[str, object] = field(default_factory=dict)
    precision: Optional[str] = None
    dictionaries: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "what", tuple(self.what))
        if self.precision is not None:
            Execution("eager", self.precision)  # validates the precision
        if not self.what:
            raise UsageError("nothing to do: give at least one of do_maxes, do_deconv, do_deconv_norm, "
                             "do_backprop, do_backprop_norm, do_info, do_histogram", "do_maxes")
        unknown = sorted(set(self.what) - set(WHAT) - {HISTOGRAM})
        if unknown:
            raise UsageError(f"unknown outputs {unknown}: choose among {', '.join(WHAT + (HISTOGRAM,))}", "what")
        if not _is_count(self.idx_begin, 0):
            raise UsageError(f"idx_begin must be an integer >= 0, got {self.idx_begin!r}", "idx_begin")
        if self.idx_end is not None and not _is_count(self.idx_end, self.idx_begin + 1):
            raise UsageError(f"idx_end must be an integer > idx_begin ({self.idx_begin}), got {self.idx_end!r}",
                             "idx_end")
        if self.n_top is not None and not _is_count(self.n_top, 1):
            raise UsageError(f"n_top must be an integer >= 1, got {self.n_top!r}", "n_top")
        if not isinstance(self.layer, str) or not self.layer:
            raise UsageError(f"layer must be a layer name, got {self.layer!r}", "layer")


def layer_top(nmt: str, maxes: Mapping[str, LayerMaxes], layer: str) -> TopN:
    """The layer's top N as ``unit_pages.TopN``; a layer the tracker file does not hold is a one-line error."""
    if layer not in maxes:
        raise UsageError(f"layer {layer!r} is not in the tracker file {nmt}, which holds {', '.join(maxes) or 'none'}",
                         "layer")
    m = maxes[layer]
    return TopN(layer, m.kind != "fc", m.values, m.images, m.positions)


def image_list(job: CropJob, recorded: ImageList) -> ImageList:
    """The image list of the run (see the module docstring): the recorded paths under datadir, or the filelist's,
    which must equal the recorded list line for line where the tracker file records one. Tar shards: the
    recorded list under the shards datadir names (``shards.recorded_list``)."""
    if recorded.description.get("kind") == "tar":
        return shards.recorded_list(job.datadir, job.filelist, recorded)
    if not os.path.isdir(job.datadir):
        raise UsageError(f"datadir {job.datadir} is not a folder", "datadir")
    if job.filelist is None:
        if not recorded.paths:
            raise UsageError(f"{job.nmt} is the original's NetMaxTracker pickle, which records no image paths: give "
                             "the filelist it was made from", "filelist")
        return ImageList(list(recorded.paths), list(recorded.labels), job.datadir, recorded.description)
    listed = read_filelist(job.datadir, job.filelist)
    if recorded.paths:
        for number, (path, label, saved_path, saved_label) in enumerate(
                zip(listed.paths, listed.labels, recorded.paths, recorded.labels), 1):
            if (path, label) != (saved_path, saved_label):
                raise UsageError(f"filelist {job.filelist} image {number} is {path!r} label {label}, but the tracker "
                                 f"file {job.nmt} recorded {saved_path!r} label {saved_label}: it must be the same "
                                 "list that find_max_acts ran on", "filelist")
        if len(listed) != len(recorded):
            raise UsageError(f"filelist {job.filelist} names {len(listed)} images, but the tracker file {job.nmt} "
                             f"recorded {len(recorded)}: it must be the same list that find_max_acts ran on",
                             "filelist")
    return listed


def needed_images(top: TopN, idx_begin: int, idx_end: int, n_top: int) -> List[int]:
    """The image indices the request draws, sorted (empty slots left out)."""
    chosen = top.images[idx_begin:idx_end, :n_top]
    return sorted({int(i) for i in chosen.ravel() if i >= 0})


def check_images(images: ImageList, needed: List[int], job: CropJob) -> None:
    """Every image the request draws is in the list and exists under datadir (before any work)."""
    for index in needed:
        if index >= len(images):
            raise UsageError(f"the tracker file {job.nmt} names image {index}, but the list has {len(images)} "
                             "images: give the filelist find_max_acts ran on", "filelist")
        if images.members is None and not os.path.isfile(images.full_path(index)):
            raise UsageError(f"image {index} {images.paths[index]!r} is not under datadir {job.datadir}: give the "
                             "folder find_max_acts read", "datadir")


def layer_layout(model: torch.nn.Module, job: CropJob, meta: dict, top: TopN) -> Layout:
    """The layer's layout as find_max_acts read it; it must read as the tracker file recorded it, with as many
    units."""
    shapes, layouts = survey_layers(model, tuple(model.input_contract.size), dict(job.layouts), "size")
    if job.layer not in layouts or job.layer not in shapes:
        raise UsageError(f"layer {job.layer!r} is not a layer of the model (or produces no tensor)", "layer")
    layout = with_include_prefix(layouts[job.layer], bool(meta.get("include_prefix", False)))
    recorded = meta.get("layouts", {}).get(job.layer)
    if recorded is not None and recorded != str(layout):
        raise UsageError(f"layer {job.layer!r} reads as {layout} here, but the tracker file {job.nmt} recorded "
                         f"{recorded}: declare it with layouts", "layouts")
    units = canonical_shape(shapes[job.layer], layout, job.layer)[0]
    if units != top.values.shape[0]:
        raise UsageError(f"layer {job.layer!r} has {units} units in this model, but the tracker file {job.nmt} "
                         f"recorded {top.values.shape[0]}: give the model find_max_acts ran", "model")
    return layout


def run_crop_patches(job: CropJob) -> List[str]:
    """Run ``job`` (see the module docstring); returns the paths written."""
    try:
        meta, recorded, maxes = load_maxes(job.nmt)
    except UsageError as exc:
        raise UsageError(f"nmt (the tracker file): {exc}") from None
    top = layer_top(job.nmt, maxes, job.layer)
    n_units, n_saved = top.values.shape
    idx_end = n_units if job.idx_end is None else job.idx_end
    n_top = n_saved if job.n_top is None else job.n_top
    if n_top > n_saved:
        raise UsageError(f"n_top {n_top}: the tracker file {job.nmt} holds the top {n_saved} of each unit; ask for "
                         f"1 .. {n_saved}", "n_top")
    pages = tuple(w for w in job.what if w != HISTOGRAM)
    check_request(top, job.idx_begin, idx_end, n_top, pages or ("info",))  # the ranges (a histogram alone: no page)
    histogram = maxes[job.layer].histogram
    if HISTOGRAM in job.what and histogram is None:
        raise UsageError(f"the tracker file {job.nmt} holds no activation histogram (find_max_acts.py ran with "
                         "--hist-bins 0, or is older, or it is the original's pickle): run find_max_acts.py again "
                         "with --hist-bins B, or drop do_histogram", "do_histogram")
    draws = any(w != "info" for w in pages)
    if draws and maxes[job.layer].kind == "tokens":
        raise UsageError(f"layer {job.layer!r} was read over all its tokens (include_prefix), without a grid: no "
                         "crop; run find_max_acts without it, or ask for do_info only", "do_maxes")
    if HISTOGRAM in job.what:
        planned = planned_histogram_paths(job.layer, job.outdir, job.idx_begin, idx_end)
        if not job.brave and any(os.path.exists(p) for p in planned):
            check_writable(planned, job.brave)  # refuses before any work
    if not pages:
        return write_histograms(histogram, job.layer, top.values, job.outdir, job.idx_begin, idx_end, n_top,
                                job.brave)
    images = image_list(job, recorded)
    needed = needed_images(top, job.idx_begin, idx_end, n_top)
    if images.description.get("kind") == "tar":
        images = shards.with_members(images, needed, job.datadir)
    check_images(images, needed, job)
    planned = planned_paths(top, job.outdir, job.idx_begin, idx_end, n_top, pages)
    if not job.brave and any(os.path.exists(p) for p in planned):
        check_writable(planned, job.brave)  # refuses before the model is loaded
    recorded_precision, precision = run_precision(job, meta)
    check_recorded(job.layer, meta.get("dictionaries", {}), job.dictionaries, job.nmt)
    context = open_exemplar_run(job.model, job.device, precision, job.brave)
    model = context.model
    attach_dictionaries(model, job.dictionaries, job.layouts)
    definition = recorded_definition(meta, job.layer)
    if definition is None:
        layout = layer_layout(model, job, meta, top)
    else:  # a derived group (--unit / --directions): crops and gradients from its layer(s) and seeds
        top, layout = derived_top(model, load_group(job.nmt, meta, definition, model, job.layouts), top)
    preprocess = preprocess_for(model)

    def load_input(index: int) -> torch.Tensor:
        return preprocess(read_rgb(images, index))[None].to(context.device)

    log.info("crop_max_patches: layer %s units %d..%d, ranks 0..%d, %s, %d images, %s", job.layer, job.idx_begin,
             idx_end - 1, n_top - 1, ", ".join(job.what), len(images), precision)
    remove_stale_outputs(planned)
    written = write_unit_pages(model, top, images.paths, images.labels, load_input, job.outdir, job.idx_begin,
                               idx_end, n_top, pages, job.brave, layout, precision=precision,
                               value_rtol=value_rtol(recorded_precision, precision))
    if HISTOGRAM in job.what:
        written += write_histograms(histogram, job.layer, top.values, job.outdir, job.idx_begin, idx_end, n_top,
                                    job.brave)
    return written


def remove_stale_outputs(planned: List[str]) -> int:
    """Remove the temporary files a killed run left beside the planned outputs (``atomic``'s ``.<name>.*.tmp``),
    listing each folder once; returns how many."""
    by_folder = {}
    for path in planned:
        by_folder.setdefault(os.path.dirname(path), set()).add(os.path.basename(path))
    removed = 0
    for folder, names in by_folder.items():
        if not os.path.isdir(folder):
            continue
        for entry in os.listdir(folder):
            stem = entry[1:].rsplit(".", 2)[0] if entry.startswith(".") and entry.endswith(".tmp") else None
            if stem in names:
                removed += remove_stale_temps(os.path.join(folder, stem))
    return removed


def run_precision(job: CropJob, meta: dict) -> Tuple[str, str]:
    """(the precision the tracker file records, float32 where it records none; the precision to run: the job's,
    else the recorded one). A difference is logged once: recorded values are then compared more loosely."""
    recorded = meta.get("precision") or "float32"
    precision = job.precision or recorded
    if precision != recorded:
        log.warning("the tracker file %s was made in %s, the deconv and backprop images are computed in %s: a "
                    "unit's values differ by up to %.0f %% of its top value", job.nmt, recorded, precision,
                    100 * value_rtol(recorded, precision))
    return recorded, precision

