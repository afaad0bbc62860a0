"""An optimize_image job's settings, validated once: ``OptimizeJob``.

Which model (``run.context.ModelChoice``), which pixel space (None for data_size / mean / channel_swap_to_rgb: the
model's own), which unit(s) and how (``FindParams``, ``channels``, the objective), where to write, and how the
network step runs (engine, precision, image dtype). ``pipeline.run_job`` runs it; ``outputs`` names and writes its
files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple, Union

import torch
from torch import nn

from dvtoolbox.checks import MAX_IMAGE_SIDE, check_int, check_sequence
from dvtoolbox.device import Execution
from dvtoolbox.dictionaries import LayerDictionary
from dvtoolbox.errors import UsageError
from dvtoolbox.models.input_size import npy_image_size
from dvtoolbox.models.pixel_space import MeanSpec
from dvtoolbox.models.registry import DEFAULT_MODEL
from dvtoolbox.objectives import Objective, create_objective
from dvtoolbox.optimize.loop import STATS_EVERY
from dvtoolbox.optimize.params import FindParams
from dvtoolbox.run.units import UnitSpec
from dvtoolbox.run.context import ModelChoice

IMAGE_DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass
class OptimizeJob:
    """Everything one run needs. None for data_size / mean / channel_swap_to_rgb means "the model's own".

    model: a name, ``package.module:factory``, a saved-module file (``models.load.load_model``) or an nn.Module;
    weights: the named model's ("default", a path, None for random). A module without an input contract is given
    RGB in [0, 1] normalised by input_mean / input_std (ImageNet's by default; 0..1 scale) at data_size, else the
    size it declares, else its start_at x0's, else 224 (``models.input_size``).
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
    engine: str = "auto"  # how the network step runs (dvtoolbox.device.Execution); auto: eager (AUTO_ENGINE)
    precision: str = "float32"  # of the network: true float32 (the original's), "tf32" or "bf16" (see the doc)
    stats_every: int = STATS_EVERY  # iterations between copies of the statistics to the host
    trust_model_file: bool = False  # unpickle a module file whole, past the allow-list (models.module_files)
    dictionaries: Dict[str, LayerDictionary] = field(default_factory=dict)  # for DICT#k objective terms
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
            self.parsed_objective = create_objective(self.objective, dictionaries=self.dictionaries)

    @property
    def execution(self) -> Execution:
        """The engine and precision of the network step (``allow_tf32`` is precision tf32)."""
        return Execution(self.engine, "tf32" if self.allow_tf32 else self.precision)

    @property
    def model_choice(self) -> ModelChoice:
        """The network to load (the run context's): the Caffe net, or ``model`` in the data size asked for (a plain
        model's size, else its own, else its x0's)."""
        return ModelChoice(self.model, self.weights, self.input_mean, self.input_std,
                           None if self.data_size is None else tuple(self.data_size), self.deploy_proto,
                           self.net_weights, first_image=npy_image_size(self.params.start_at),
                           trust_model_file=self.trust_model_file)

    @property
    def unit_spec(self) -> UnitSpec:
        """The units to push: ``channels`` when given, else the params' single push_channel."""
        return self.params.push_channel if self.channels is None else self.channels

    @property
    def prefix_template(self) -> str:
        """The original's '<output-prefix>_<output-template>_'."""
        return f"{self.output_prefix}_{self.output_template}_"

