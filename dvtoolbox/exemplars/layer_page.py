"""From a folder of photographs to a browsable layer in one run: ``LayerPageJob`` and ``run_layer_page(job)``.

    job = LayerPageJob(ModelChoice("efficientnet_lite0"), datadir="photos", outdir="page", layer="_blocks.5",
                       units="0:8")
    index = run_layer_page(job)        # page/synthetic/index.html

The run chains the three commands' jobs, each with its own checks, on one output folder:

1. ``find_max_acts``: every unit of ``layer`` over the photographs, top N -> ``outdir/maxes.npz``;
2. ``crop_max_patches``: for the chosen units, the crops of their top images, backprop images, info.txt and the
   activation histogram over the photographs -> ``outdir/exemplars/<layer>/unit_%04d/``;
3. ``optimize_image``: each chosen unit's synthetic image by the original's
   regularised gradient ascent (the README's first command's settings, ``max_iter`` steps), the units batched ->
   ``outdir/synthetic/``;
4. the gallery: ``outdir/synthetic/index.html``, each unit's synthetic image beside its crops, their values and
   histogram.

Every setting is validated and the output folder checked (it must be empty or absent, else ``brave``) before the
first stage runs.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import List, Mapping, Optional, Tuple

from dvtoolbox.checks import MAX_ITERATIONS, check_int
from dvtoolbox.device import Execution
from dvtoolbox.errors import UsageError
from dvtoolbox.exemplars.crop_job import CropJob, run_crop_patches
from dvtoolbox.exemplars.job import FindMaxesJob, plan_layers, run_find_maxes
from dvtoolbox.io.gallery import write_gallery
from dvtoolbox.optimize.job import OptimizeJob, run_job
from dvtoolbox.optimize.params import FindParams
from dvtoolbox.run.units import UnitSpec, parse_channels
from dvtoolbox.models.layouts import canonical_shape, survey_layers
from dvtoolbox.run.context import ModelChoice, open_run

log = logging.getLogger(__name__)

CROP_OUTPUTS = ("maxes", "backprop", "info", "histogram")
# The README's first command: the paper's fc8 settings, which also serve hidden layers of the embedded model.
SYNTHETIC_SETTINGS = dict(decay=0.0001, blur_radius=1.0, blur_every=4, lr_policy="constant", lr_params={"lr": 100.0})
MAX_SYNTHETIC_BATCH = 16


@dataclass(frozen=True)
class LayerPageJob:
    """What one layer page runs. datadir: the photographs (a folder tree, or the original's datadir with
    ``filelist``); outdir: the page's folder (empty or absent, else brave); layer: a layer name; units: the units
    shown (``run.units`` forms: ``0:8``, ``1,130,554``, ``all``); n_top: crops per unit; max_iter, seed: the
    synthetic images' steps and seed; batch_size: images per forward pass of find_max_acts; layouts: declared
    layouts {layer: Layout or text} (the commands' --layout)."""

    model: ModelChoice
    datadir: str
    outdir: str
    layer: str
    units: UnitSpec = "0:8"
    n_top: int = 9
    filelist: Optional[str] = None
    max_iter: int = 300
    seed: int = 0
    batch_size: int = 32
    workers: Optional[int] = None
    device: Optional[str] = None
    brave: bool = False
    progress: Optional[bool] = None
    layouts: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self):
        check_int("n_top", self.n_top, 1)
        check_int("max_iter", self.max_iter, 1, MAX_ITERATIONS)
        check_int("seed", self.seed, 0, 2**32 - 1)
        if not isinstance(self.layer, str) or not self.layer:
            raise UsageError(f"layer must be a layer name, got {self.layer!r}", "layer")
        parse_channels(self.units, 2**62)  # the form now; the range once the layer's size is known

    @property
    def maxes_path(self) -> str:
        return os.path.join(self.outdir, "maxes.npz")

    @property
    def exemplars_dir(self) -> str:
        return os.path.join(self.outdir, "exemplars")

    @property
    def synthetic_dir(self) -> str:
        return os.path.join(self.outdir, "synthetic")


def contiguous_runs(units: List[int]) -> List[Tuple[int, int]]:
    """[begin, end) ranges covering ``units`` (sorted, no repeats), e.g. [1, 2, 3, 7] -> [(1, 4), (7, 8)]."""
    runs: List[Tuple[int, int]] = []
    for unit in sorted(set(units)):
        if runs and runs[-1][1] == unit:
            runs[-1] = (runs[-1][0], unit + 1)
        else:
            runs.append((unit, unit + 1))
    return runs


def check_outdir(job: LayerPageJob) -> None:
    """The page's folder is absent or empty, or brave: a page is not written over another run's files."""
    if os.path.exists(job.outdir) and not os.path.isdir(job.outdir):
        raise UsageError(f"outdir {job.outdir} is a file, not a folder", "outdir")
    if os.path.isdir(job.outdir) and os.listdir(job.outdir) and not job.brave:
        raise UsageError(f"cowardly refusing to write into {job.outdir}, which is not empty; give an empty folder or "
                         "allow it with brave", "outdir", "brave")


def layer_survey(job: LayerPageJob, find: FindMaxesJob) -> Tuple[List[int], Optional[Tuple[int, int]]]:
    """(the units the page shows, checked against the layer; the centre (y, x) of the layer's grid, None without
    one), the model surveyed once, before anything is written."""
    context = open_run(job.model, job.device, Execution("eager"), job.brave)
    model = context.model
    shapes, layouts = survey_layers(model, tuple(model.input_contract.size), dict(job.layouts), "size")
    (layout, _, n_units), = plan_layers(model, find).values()
    shape = canonical_shape(shapes[job.layer], layout, job.layer)
    centre = (shape[1] // 2, shape[2] // 2) if len(shape) == 3 else None
    return parse_channels(job.units, n_units), centre


def synthetic_job(job: LayerPageJob, units: List[int], centre: Optional[Tuple[int, int]]) -> OptimizeJob:
    """The optimize_image job of the page's units: the README's first command's settings, each unit pushed at the
    centre of its grid (the original's advice: "(6,6) will maximize the center unit of the 13x13 spatial grid"),
    the units batched."""
    params = FindParams(push_layer=job.layer, push_channel=units[0], push_spatial=centre or (0, 0),
                        rand_seed=job.seed, max_iter=job.max_iter, **SYNTHETIC_SETTINGS)
    return OptimizeJob(params, model=job.model.model, weights=job.model.weights, input_mean=job.model.input_mean,
                       input_std=job.model.input_std, deploy_proto=job.model.deploy_proto,
                       net_weights=job.model.net_weights, data_size=job.model.size, device=job.device,
                       output_prefix=os.path.join(job.synthetic_dir, "opt"), brave=job.brave,
                       channels=",".join(str(u) for u in units), batch_size=min(MAX_SYNTHETIC_BATCH, len(units)),
                       trust_model_file=job.model.trust_model_file,
                       layouts={name: str(layout) for name, layout in job.layouts.items()})


def run_layer_page(job: LayerPageJob) -> str:
    """Run ``job`` (see the module docstring); returns the path of the page (index.html)."""
    check_outdir(job)
    find = FindMaxesJob(job.model, job.datadir, job.maxes_path, job.filelist, n_top=job.n_top, layers=(job.layer,),
                        batch_size=job.batch_size, workers=job.workers, device=job.device, brave=job.brave,
                        progress=job.progress, checkpoint_every=0, layouts=job.layouts)
    units, centre = layer_survey(job, find)
    optimize = synthetic_job(job, units, centre)
    os.makedirs(job.outdir, exist_ok=True)
    log.info("layer page 1/4: find_max_acts on %s", job.datadir)
    run_find_maxes(find)
    log.info("layer page 2/4: crops of %d units", len(units))
    for begin, end in contiguous_runs(units):
        run_crop_patches(CropJob(job.model, job.maxes_path, job.datadir, job.exemplars_dir, job.layer, CROP_OUTPUTS,
                                 filelist=job.filelist, idx_begin=begin, idx_end=end, device=job.device,
                                 brave=job.brave, layouts=job.layouts))
    log.info("layer page 3/4: synthetic images of %d units, %d steps", len(units), job.max_iter)
    run_job(optimize)
    log.info("layer page 4/4: the gallery")
    return write_gallery(job.synthetic_dir, brave=job.brave, exemplars=os.path.join(job.exemplars_dir, job.layer))
