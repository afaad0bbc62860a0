"""A visualize job's settings, validated once: ``VisualizeJob`` (what ``visualize.py`` does, from Python).

    from dvtoolbox.optvis.job import VisualizeJob, run_visualize

    written = run_visualize(VisualizeJob(objective="fc8:130", thresholds=(128, 256), output_dir="viz", brave=True))

Every rule that needs no model is checked here, when the job is made; a bad setting is a one-line UsageError
naming it (the command line shows its flag instead). ``pipeline.run_visualize`` runs the job.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from dvtoolbox.checks import MAX_IMAGE_SIDE, MAX_IMAGES, MAX_SEED, check_int, check_real
from dvtoolbox.device import Execution
from dvtoolbox.dictionaries import LayerDictionary
from dvtoolbox.errors import UsageError
from dvtoolbox.models.registry import DEFAULT_MODEL
from dvtoolbox.objectives import Objective, create_objective, text_direction
from dvtoolbox.optvis.alpha import ALPHA_COEF, ALPHA_TARGET
from dvtoolbox.optvis.dvt import LRSchedule
from dvtoolbox.optvis.job.parameterisations import PARAMETERISATIONS
from dvtoolbox.optvis.auto_recipe import AUTO, STARTS_FROM_PHOTOGRAPH, TRANSPARENT, AutoChoice, choose, objective_kind
from dvtoolbox.optvis.recipes import RECIPES
from dvtoolbox.optvis.render import FIT_MODES, check_thresholds
from dvtoolbox.optvis.transforms import TRANSFORM_PRESETS
from dvtoolbox.regularizers.lr_policies import validate_lr_params
from dvtoolbox.regularizers.settings import Regularizers
from dvtoolbox.run.context import ModelChoice

OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}
DEFAULT_FIT = "crop"
DEFAULT_RECIPE = "lucid"       # the recipe settings a job with recipe None gets (and auto's until the model decides)
RECIPE_SETTINGS = ("param", "views", "transforms", "decay_power", "lr")
DEFAULT_OBJECTIVE = "_blocks.10:97"
TEXT_LAYER = "image_embeds"     # where hf_models puts a CLIP-like model's image embedding
DEFAULT_BACKGROUND = "color"   # render_transparent's default
DEFAULT_ALPHA_JITTER = 2       # the notebook's jitter_n
ALPHA_SETTINGS = ("background", "adversarial_bg", "alpha_target", "alpha_coef", "alpha_jitter")


@dataclass
class VisualizeJob:
    """Everything one visualize run needs (see the module docstring). ``model``, ``weights``, ``input_mean``,
    ``input_std``: as ``models.load.load_model`` takes them (a name, package.module:factory, a saved module, an
    nn.Module); ``layouts``: where some layers' channels are, over what is inferred. None for ``size`` means the
    model's input size; ``alpha`` turns on transparency, with ``background``, ``adversarial_bg``, ``alpha_target``,
    ``alpha_coef`` and ``alpha_jitter`` (None: their defaults); ``start_images`` (photograph paths, one per image
    or one for all) turn on feature accentuation (``optvis.accentuate``), with ``accent_layer`` (None: the
    objective's layer) and ``accent_coef`` (None: ``accentuate.DEFAULT_COEF``); ``fit``: how a transformed image
    reaches the model's input size (``FeatureViz``; None: crop, or the image at its own size where recipe auto's
    table says so and the model takes it, ``settle_fit``). ``recipe`` (``recipes.RECIPES``, ``"auto"`` (the default:
    chosen from the objective and the model, ``optvis.auto_recipe``), None: lucid's) gives the settings left None:
    param, views, transforms, decay_power and lr, exactly as ``visualize.py --recipe`` gives their flags' defaults;
    a setting given explicitly wins over the recipe. With ``"auto"``, ``auto_choice`` says what was chosen: set at
    once for a photograph or alpha, else by ``settle_recipe`` once the model's layers are known (until then the
    job holds lucid's settings). ``units`` (all, ``0:64``, ``3,5,9``) makes it a whole-layer job over the layer or
    dictionary that ``objective`` names alone, ``batch`` units per render, ``resume`` skipping what is written
    (``job.units``); ``text`` with ``objective`` adds the objective's terms to the text direction."""

    objective: Optional[str] = DEFAULT_OBJECTIVE
    text: Optional[str] = None   # a text direction on a CLIP-like model's image_embeds (objective: terms added)
    model: Union[str, nn.Module] = DEFAULT_MODEL
    weights: Union[None, str] = "default"
    input_mean: Optional[Tuple[float, float, float]] = None
    input_std: Optional[Tuple[float, float, float]] = None
    layouts: Dict[str, object] = field(default_factory=dict)
    param: Optional[str] = None  # None: the recipe's (lucid: fft)
    decorrelate: bool = True
    decay_power: Optional[float] = None  # None: the recipe's (lucid: 1.0)
    lowres_factor: int = 4
    size: Optional[int] = None
    batch: int = 1
    resize_to_contract: bool = True
    fit: Optional[str] = None  # None: crop, or own size where recipe auto feeds it so (settle_fit)
    start_images: Sequence[str] = ()
    accent_layer: Optional[str] = None
    accent_coef: Optional[float] = None
    alpha: bool = False
    background: Optional[str] = None
    adversarial_bg: bool = False
    alpha_target: Optional[float] = None
    alpha_coef: Optional[float] = None
    alpha_jitter: Optional[int] = None
    recipe: Optional[str] = AUTO
    thresholds: Sequence[int] = (512,)
    lr: Optional[float] = None  # None: the recipe's (lucid: 0.05)
    optimizer: str = "adam"
    transforms: Optional[str] = None  # None: the recipe's (lucid: standard)
    views: Optional[int] = None  # None: the recipe's (lucid: 1)
    seed: int = 0
    device: Optional[str] = None
    allow_tf32: bool = False  # the same as precision "tf32"
    engine: str = "auto"  # how the network step runs (dvtoolbox.device.Execution; not graphs); auto: eager
    precision: str = "float32"  # of the network: true float32, "tf32" or "bf16"
    regularizers: Regularizers = field(default_factory=Regularizers)
    lr_policy: Optional[str] = None
    lr_params: Optional[Dict[str, float]] = None
    output_dir: str = "visualize_results"
    output_prefix: str = "viz"
    brave: bool = False
    progress: bool = False
    config: Dict[str, object] = field(default_factory=dict)
    trust_model_file: bool = False  # unpickle a module file whole, past the allow-list (models.module_files)
    dictionaries: Dict[str, LayerDictionary] = field(default_factory=dict)  # for DICT#k objective terms
    units: Optional[str] = None  # every unit of the layer or dictionary ``objective`` names: all, 0:64, 3,5,9
    resume: bool = False         # with units: skip the batches already written (``job.units``)
    parsed_objective: Optional[Objective] = field(init=False, repr=False, default=None)
    auto_choice: Optional[AutoChoice] = field(init=False, default=None)

    def __post_init__(self):
        self._given = frozenset(name for name in RECIPE_SETTINGS if getattr(self, name) is not None)
        self._fit_given = self.fit is not None
        self._token_model = False          # set by settle_recipe from the model's layouts
        if self.fit is None:
            self.fit = DEFAULT_FIT
        if self.recipe == AUTO:
            self.auto_choice = STARTS_FROM_PHOTOGRAPH if self.start_images else TRANSPARENT if self.alpha else None
        self._apply_recipe()
        self.thresholds = check_thresholds(self.thresholds)
        if self.allow_tf32 and self.precision not in ("float32", "tf32"):
            raise UsageError(f"allow_tf32 cannot be combined with precision {self.precision} (allow_tf32 is precision "
                             "tf32)", "allow_tf32", "precision")
        if self.execution.engine == "graphs":
            raise UsageError("engine graphs replays the DVT loop's iterations (optimize_image.py); visualize's steps "
                             "draw random transforms: use engine compiled", "engine")
        if self.execution.compiled and not self.resize_to_contract:
            raise UsageError("engine compiled traces one graph per input size, and with resize_to_contract=False "
                             "every random scale is another size (another compile, minutes each): use engine folded "
                             "or eager, or let the images be fitted to the model's size", "engine",
                             "resize_to_contract=False")
        self._check_settings()
        if self.resume and self.units is None:
            raise UsageError("resume needs units (a whole-layer run)", "resume", "units")
        self._facet: Optional[Objective] = None
        if self.text is not None:
            self._check_text()
            if self.objective is not None:   # terms added to the text direction, e.g. a facet's probe
                self._facet = create_objective(self.objective, dictionaries=self.dictionaries)
            return                       # the objective needs the text tower: ``text_objective``, at run time
        if self.objective is None:
            raise UsageError("give an objective (or a text)", "objective", "text")
        if self.units is not None:
            self._check_units()
        # parsed once (with units: unit 0's, for recipe auto); layers checked with the model
        self.parsed_objective = create_objective(self.objective if self.units is None else self.unit_objective(0),
                                                 dictionaries=self.dictionaries)

    def _check_units(self) -> None:
        """units: the objective names a layer or a dictionary alone; one image per unit, so no photographs, no
        alpha."""
        if not isinstance(self.units, str) or not self.units.strip():
            raise UsageError(f"units must be all, a range (0:64) or a list (3,5,9), got {self.units!r}", "units")
        if not re.fullmatch(r"[\w./]+(?:@[A-Za-z_][\w./]*)*", self.objective):
            raise UsageError(f"units: the objective must name a layer or a dictionary alone (e.g. _blocks.10 or "
                             f"sae), got {self.objective!r}", "units", "objective")
        for name, bad in (("alpha", self.alpha), ("start_images", bool(self.start_images))):
            if bad:
                raise UsageError(f"units cannot be combined with {name} (one image per unit)", "units", name)

    def unit_objective(self, k: int) -> str:
        """units: unit k of the objective's NAME, ``NAME#k`` (latent k's pre-activation) for a dictionary,
        ``NAME:k`` (channel k) for a layer."""
        return f"{self.objective}#{k}" if self.objective in self.dictionaries else f"{self.objective}:{k}"

    def _check_text(self) -> None:
        if self.units is not None:
            raise UsageError("units are those of the layer or dictionary the objective names, not of a text",
                             "units", "text")
        if not isinstance(self.text, str) or not self.text.strip():
            raise UsageError(f"text must be a non-empty prompt, got {self.text!r}", "text")
        if self.alpha:
            raise UsageError("alpha renders a single unit (layer:channel); a text direction is not one", "alpha",
                             "text")
        if not (isinstance(self.model, str) and self.model.startswith("hf:")):
            raise UsageError(f"text needs a CLIP or SigLIP model by name (hf:<repo or folder>), got "
                             f"{self.model if isinstance(self.model, str) else type(self.model).__name__}",
                             "text", "model")

    def text_objective(self) -> Objective:
        """The text direction (``objectives.text_direction`` on ``image_embeds``), plus the objective's terms when
        one is given too (a faceted text objective: e.g. ``0.5 * facet#0``, a facet's linear probe as a one-latent
        dictionary), made once: it loads the text tower and tokenizer of the job's model (``models.hf_text``)."""
        if self.parsed_objective is None:
            from dvtoolbox.models.hf_text import text_embeddings

            embedding = text_embeddings(self.model[len("hf:"):], [self.text], self.weights)[0]
            direction = text_direction(TEXT_LAYER, embedding)
            self.parsed_objective = direction if self._facet is None else direction + self._facet
        return self.parsed_objective

    def _check_settings(self) -> None:
        self._check_values()
        self._check_accent()
        self._check_alpha()
        if self.regularizers.active and self.param != "dvt":
            raise UsageError(f"regularizers need param dvt, got param {self.param}", "regularizers", "param")

    @property
    def recipe_name(self) -> Optional[str]:
        """The recipe whose settings the job holds: the given one, auto's choice, or None (lucid's settings)."""
        if self.recipe == AUTO:
            return self.auto_choice.recipe if self.auto_choice is not None else None
        return self.recipe

    @property
    def recipe_pending(self) -> bool:
        """recipe auto, waiting for the model's layers (``settle_recipe``)."""
        return self.recipe == AUTO and self.auto_choice is None

    def settle_recipe(self, layouts) -> Optional[AutoChoice]:
        """recipe auto: choose from the objective and ``layouts`` (layer name -> Layout, the model's survey), give
        the chosen recipe's settings to those not given explicitly and check them again. Returns the choice (None
        for a named recipe)."""
        if self.recipe_pending:
            self._token_model = any(layout.kind == "NTC" for layout in layouts.values())
            self.auto_choice = choose(objective_kind(self.parsed_objective, layouts), self._given)
            for name in RECIPE_SETTINGS:
                if name not in self._given:
                    setattr(self, name, None)
            self._apply_recipe()
            self._check_settings()
        return self.auto_choice

    def own_size_blocker(self) -> str:
        """Why this job cannot feed the transformed image at its own size, whatever the model ("" when it can)."""
        if self._fit_given:
            return "fit given"
        if self.execution.compiled:
            return "engine compiled traces one size"
        if self.views != 1:
            return f"{self.views} views per step share one forward pass"
        if self._token_model:
            return "a token model: another size interpolates its position embeddings, not measured"
        return ""

    def settle_fit(self, takes_other_sizes: Callable[[], bool]) -> None:
        """recipe auto, after ``settle_recipe``: where the chosen row feeds the image at its own size, do so
        (``resize_to_contract=False``) when nothing in the job pins the size and ``takes_other_sizes()`` (a dry
        forward pass of the model at other sizes) says the model allows it; ``auto_choice`` records why not."""
        if self.auto_choice is None or not self.auto_choice.own_size or not self.resize_to_contract:
            return                        # resize_to_contract=False given: fed at its own size already
        blocker = self.own_size_blocker() or ("" if takes_other_sizes() else "the model takes only its own size")
        self.auto_choice = self.auto_choice.settle_fit(blocker)
        if self.auto_choice.own_size:
            self.resize_to_contract = False

    def _apply_recipe(self) -> None:
        """The recipe's settings (lucid's without one, or while auto waits for the model) for every recipe setting
        left None."""
        if self.recipe is not None and self.recipe != AUTO and self.recipe not in RECIPES:
            raise UsageError(f"recipe must be one of {AUTO}, {', '.join(RECIPES)}, got {self.recipe!r}", "recipe")
        for name, value in RECIPES[self.recipe_name or DEFAULT_RECIPE].cli_defaults().items():
            if getattr(self, name) is None:
                setattr(self, name, value)

    def _check_values(self) -> None:
        choices = (("param", PARAMETERISATIONS), ("optimizer", OPTIMIZERS), ("transforms", TRANSFORM_PRESETS),
                   ("fit", FIT_MODES))
        for name, valid in choices:
            if getattr(self, name) not in valid:
                raise UsageError(f"{name} must be one of {', '.join(valid)}, got {getattr(self, name)!r}", name)
        for name, low, high in (("batch", 1, MAX_IMAGES), ("size", 1, MAX_IMAGE_SIDE), ("views", 1, MAX_IMAGES),
                                ("lowres_factor", 1, None), ("seed", 0, MAX_SEED)):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), low, high)
        if not (math.isfinite(self.decay_power) and self.decay_power >= 0):
            raise UsageError(f"decay_power must be >= 0 and finite, got {self.decay_power}", "decay_power")
        if self.decay_power != 1.0 and self.param != "fft":
            raise UsageError(f"decay_power shapes the Fourier spectrum: it needs param fft, got {self.param}",
                             "decay_power", "param")
        check_real("lr", self.lr)
        if not self.lr > 0:
            raise UsageError(f"lr must be > 0, got {self.lr}", "lr")
        if self.lr_params is not None and self.lr_policy is None:
            raise UsageError("lr_params needs lr_policy", "lr_params", "lr_policy")
        if self.lr_policy is not None:
            validate_lr_params(self.lr_policy, self.lr_schedule.params)
        if not self.output_prefix or os.sep in self.output_prefix:
            raise UsageError(f"output_prefix must be a file name prefix without {os.sep!r}, got "
                             f"{self.output_prefix!r}", "output_prefix")

    def _check_accent(self) -> None:
        """The maco and accentuation rules that need no model."""
        self.start_images = tuple(self.start_images)
        if self.param == "maco" and not self.decorrelate:
            raise UsageError("param maco cannot be combined with decorrelate=False (it makes images in the "
                             "decorrelated colour space of its spectrum)", "param", "decorrelate=False")
        if not self.start_images:
            if self.recipe_name == "accent":
                raise UsageError("recipe accent accentuates a photograph: give start_images", "recipe",
                                 "start_images")
            for name in ("accent_layer", "accent_coef"):
                if getattr(self, name) is not None:
                    raise UsageError(f"{name} needs start_images", name, "start_images")
            return
        if self.param != "fft" or not self.decorrelate or self.alpha:
            raise UsageError("start_images needs param fft, without decorrelate=False or alpha (it starts a Fourier "
                             "image with decorrelated colour from the photographs)", "start_images", "param",
                             "decorrelate=False", "alpha")
        if self.batch not in (1, len(self.start_images)):
            raise UsageError(f"start_images gives {len(self.start_images)} images: batch must be 1 or "
                             f"{len(self.start_images)}, got {self.batch}", "batch", "start_images")
        self.batch = len(self.start_images)  # one image per photograph
        missing = [p for p in self.start_images if not os.path.isfile(p)]
        if missing:
            raise UsageError(f"start_images: no such file {missing[0]!r}", "start_images")
        if self.accent_coef is not None and not 0.0 <= self.accent_coef < float("inf"):
            raise UsageError(f"accent_coef must be >= 0 and finite, got {self.accent_coef}", "accent_coef")

    def _check_alpha(self) -> None:
        """The alpha rules that need no model: its settings need it, and it refuses what ``render_transparent``
        does not do (another parameterisation, several images, SGD, an lr policy, the DVT regularizers)."""
        if not self.alpha:
            given = [name for name in ALPHA_SETTINGS if getattr(self, name) not in (None, False)]
            if given:
                raise UsageError(f"{given[0]} needs alpha", given[0], "alpha")
            return
        if self.recipe_name not in (None, "lucid"):
            raise UsageError(f"alpha cannot be combined with recipe {self.recipe_name} (it renders one transparent image "
                             "with lucid's settings)", "alpha", "recipe")
        if self.views != 1:
            raise UsageError(f"views must be 1 with alpha, got {self.views}", "views", "alpha")
        refused = [("param " + str(self.param), "param", self.param != "fft"),
                   ("decorrelate", "decorrelate", not self.decorrelate),
                   (f"batch {self.batch}", "batch", self.batch != 1),
                   (f"optimizer {self.optimizer}", "optimizer", self.optimizer != "adam"),
                   ("lr_policy", "lr_policy", self.lr_policy is not None),
                   (f"decay_power {self.decay_power}", "decay_power", self.decay_power != 1.0),
                   ("regularizers", "regularizers", self.regularizers.active),
                   (f"engine {self.engine}", "engine", self.engine not in ("auto", "eager")),
                   ("precision bf16", "precision", self.precision == "bf16")]
        for what, name, bad in refused:
            if bad:
                raise UsageError(f"alpha cannot be combined with {what} (it optimises one RGBA Fourier image with "
                                 "decorrelated colour, with Adam at the constant lr)", "alpha", name, "lr")
        _, _, target, coef, jitter_n = self.alpha_settings
        if not 0.0 < target < 1.0:
            raise UsageError(f"alpha_target must be in (0, 1), got {target}", "alpha_target")
        if not 0.0 <= coef < float("inf"):
            raise UsageError(f"alpha_coef must be >= 0 and finite, got {coef}", "alpha_coef")
        if jitter_n < 0:
            raise UsageError(f"alpha_jitter must be >= 0, got {jitter_n}", "alpha_jitter")
        if self.adversarial_bg and self.alpha_settings[0] == "none":
            raise UsageError("adversarial_bg needs a background other than none (there is no background to "
                             "optimise)", "adversarial_bg", "background")

    @property
    def execution(self) -> Execution:
        """The engine and precision of the network step (``allow_tf32`` is precision tf32)."""
        return Execution(self.engine, "tf32" if self.allow_tf32 else self.precision)

    @property
    def model_choice(self) -> ModelChoice:
        """The network to load (the run context's); a plain model that declares no size takes the images' size."""
        return ModelChoice(self.model, self.weights, self.input_mean, self.input_std,
                           first_image=None if self.size is None else (self.size, self.size),
                           trust_model_file=self.trust_model_file)

    @property
    def alpha_settings(self) -> Tuple[str, bool, float, float, int]:
        """(background, adversarial, alpha_target, alpha_coef, jitter_n) with the defaults filled in."""
        return (self.background if self.background is not None else DEFAULT_BACKGROUND, bool(self.adversarial_bg),
                float(self.alpha_target if self.alpha_target is not None else ALPHA_TARGET),
                float(self.alpha_coef if self.alpha_coef is not None else ALPHA_COEF),
                int(self.alpha_jitter if self.alpha_jitter is not None else DEFAULT_ALPHA_JITTER))

    @property
    def lr_schedule(self) -> Optional[LRSchedule]:
        """The DVT lr policy setting the optimizer's lr each step, or None (the constant lr)."""
        if self.lr_policy is None:
            return None
        return LRSchedule(self.lr_policy, self.lr_params if self.lr_params is not None else {"lr": self.lr})
