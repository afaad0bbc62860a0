"""The feature-visualisation loop: optimize an image parameterisation so that the model maximises an objective.

``FeatureViz(model, objective).visualize(param_f, thresholds, ...)`` -> one image batch per threshold. Each step:

    1. image   = image_f()                           (N, 3|4, H, W) RGB(A) in [0, 1]
       scene   = pre_transform(image, generator)     optional (default: the image itself), e.g. RGBA composited
                                                     over optimised backgrounds (``alpha.py``)
    2. x       = transforms(scene, generator)        random augmentations (``transforms.py``); RGBA is composited
                                                     over a random background; fitted to the model's input size
                                                     when it differs (``fit``: centre crop / grey pad by
                                                     default); then ``to_model_input`` (0..255, model
                                                     channel order, minus the model mean). With ``views`` = V > 1
                                                     this is done V times, each view drawing its own parameters
                                                     from the generator (view 0 first), and the views are
                                                     concatenated: (V * M, 3, h, w), view v of image m at v*M + m
    3. forward = model(x)                            the objective's layers captured by ``LayerCapture``; one
                                                     forward pass for all views, ending at the last layer the
                                                     objective reads (``CapturedNetwork``)
    4. value   = objective(acts)                     a 0-dim tensor to maximise (``objectives.py``); with V views,
                                                     the mean over v of objective(view v's acts) (see below)
    5. backward of -value into the parameters only   (the model's own .grad is never touched)
    5b. optional: the optimizer's lr from a DVT lr policy (``dvt.LRSchedule``)
    6. optimizer.step()
    6b. optional: ``image_f.after_step`` (``dvt.model_pixel_image``: DVT's regularizers, then the clip to 0..255)
    7. record  image_f() as numpy after the steps named in ``thresholds``

Phases 3 to 5 run as ``execution`` says (``dvtoolbox.device.Execution``, the engine both loops share): eagerly
(the default), on a copy with batch norms folded, or (engine compiled) as one compiled graph giving the objective
and its gradient to the model input, which the backward pass then carries through the transforms; in float32 or
bf16 autocast. The objective's value stays on the device; the progress bar reads it every ``PROGRESS_EVERY``
steps.

One ``torch.Generator`` on the device, seeded with ``seed``, draws the initial parameters (``param_f`` runs inside
``param_defaults``) and then every transform's parameters: the same seed, model, device and arguments give the
same images bit for bit, and torch's global RNG is neither read nor changed. Hooks are removed and the model's
train/eval mode restored in ``finally``, also when a step raises.

Views (``views=V``): the objective is evaluated once per view, on that view's slice of every captured output
(rows v*M .. v*M + M - 1, so ``batch=i`` still means image i and the batch-coupling objectives, ``diversity``,
``channel_interpolate``, ``alignment``, compare the images of one view with each other), with ``"input"`` the
untransformed image in every view; the step's value is the mean of the V values. So image m's objective is the
mean over its views, and ``views=1`` is exactly the single-view loop. Every captured output the objective reads
must have the batch first (V * M rows).
"""

from __future__ import annotations

import contextlib
import logging
import numbers
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from dvtoolbox.checks import MAX_ITERATIONS
from dvtoolbox.device import Execution
from dvtoolbox.errors import UsageError
from dvtoolbox.models.adapter import as_model
from dvtoolbox.models.capture import named_layers
from dvtoolbox.models.layouts import model_layouts
from dvtoolbox.models.pixel_space import InputContract, to_model_input
from dvtoolbox.models.program import CapturedNetwork, Program, autocast
from dvtoolbox.models.program_cache import ProgramCache, ProgramKey
from dvtoolbox.objectives import INPUT, Activations, Objective, create_objective
from dvtoolbox.optvis.dvt import LRSchedule
from dvtoolbox.optvis.param.images import get_image
from dvtoolbox.optvis.param.rng import param_defaults
from dvtoolbox.optvis.param.spatial import resize_bilinear
from dvtoolbox.optvis.show import show_images
from dvtoolbox.optvis.transforms import collapse_alpha_random, compose, crop_or_pad, standard_transforms
from dvtoolbox.regularizers.settings import Regularizers

log = logging.getLogger(__name__)
PROGRESS_EVERY = 25  # steps between progress-bar updates (each reads the objective back to the host)
EAGER = Execution("eager")
FIT_MODES = ("crop", "resize")  # how a transformed image is brought to the model's input size


def check_thresholds(thresholds) -> List[int]:
    """Strictly increasing integers in [1, MAX_ITERATIONS] (one int is one threshold)."""
    values = [thresholds] if isinstance(thresholds, numbers.Integral) else list(thresholds)
    ok = values and all(isinstance(t, numbers.Integral) and not isinstance(t, bool) and 1 <= t <= MAX_ITERATIONS
                        for t in values)
    if not ok or any(b <= a for a, b in zip(values, values[1:])):
        raise UsageError(f"thresholds must be strictly increasing integers in [1, {MAX_ITERATIONS}], got "
                         f"{thresholds!r}", "thresholds")
    return [int(t) for t in values]


def _model_device(model: nn.Module) -> torch.device:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _after_step_hook(image_f: Callable, regularizers: Optional[Regularizers]) -> Optional[Callable]:
    """``image_f.after_step`` when the parameterisation has one (``dvt.model_pixel_image``); regularizers on any
    other parameterisation are a UsageError (see ``dvt.py`` for why)."""
    hook = getattr(image_f, "after_step", None)
    if hook is None and regularizers is not None and regularizers.active:
        raise UsageError("regularizers (DVT's decay, blur, percentile clips) act on pixels: they need the pixel "
                         "parameterisation, param dvt (param_f=lambda: dvt.model_pixel_image(contract)); with other "
                         "parameterisations use lucid's penalties L2() / blur_input_each_step() as objectives",
                         "regularizers", "param")
    return hook


def _ascent_gradients(params: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """-grad of each parameter (the loop minimises -objective), zeros where no gradient reached it."""
    return [-p.grad if p.grad is not None else torch.zeros_like(p) for p in params]


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def check_views(views) -> int:
    """An integer >= 1."""
    if not isinstance(views, numbers.Integral) or isinstance(views, bool) or views < 1:
        raise UsageError(f"views must be an integer >= 1, got {views!r}")
    return int(views)


def split_views(outputs: Mapping[str, torch.Tensor], views: int, m: int,
                strict: bool = True) -> List[Dict[str, torch.Tensor]]:
    """Captured outputs of one forward pass over V = ``views`` concatenated views of M = ``m`` images ->
    V dicts, view v holding rows v*M .. v*M + M - 1 of each output (views of the tensors, still in the graph).

    An output that is not a tensor with V * M rows cannot be split: a UsageError when ``strict`` (the objective
    declared that layer), else left out of the views (a plain-callable objective hooks every layer, some of which
    may return tuples)."""
    if views == 1:
        return [dict(outputs)]
    per_view: List[Dict[str, torch.Tensor]] = [{} for _ in range(views)]
    for name, t in outputs.items():
        if not isinstance(t, torch.Tensor) or t.dim() == 0 or t.shape[0] != views * m:
            if strict:
                shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise UsageError(f"views={views}: layer {name!r} must output {views} x {m} rows, batch first, to be "
                                 f"split into views; got {shape}")
            continue
        for v in range(views):
            per_view[v][name] = t[v * m:(v + 1) * m]
    return per_view


def to_numpy_images(image: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) tensor -> (N, H, W, C) float32 numpy on the CPU."""
    return image.detach().permute(0, 2, 3, 1).cpu().numpy().astype(np.float32, copy=False)


class FeatureViz:
    """Feature visualisation of one objective on one model.

    model: any ``nn.Module`` or a model name (``create_model``: registered, torchvision's, timm's). A module that
    declares an ``input_contract`` takes dvtoolbox's pixel space (see ``dvtoolbox/models/pixel_space.py``); any
    other one is given RGB in [0, 1] normalised by ``input_mean`` / ``input_std`` (ImageNet's by default) at
    ``size`` (default: the size the module declares, else 224; ``models.input_size``) (``models.adapter.as_model``:
    said in one log line; a size the model refuses is a one-line UsageError); ``contract`` instead declares that the
    module takes the pixel space of that ``InputContract`` itself. objective: an expression (``"layer:channel"``,
    ``"fc8:1 + 0.5 * fc8:2"``, ...), an ``Objective`` or a callable ``acts -> 0-dim tensor`` to maximise; its layers
    are checked against the model now. layouts: where some layers' channels are, ``{"name": "NHWC"}`` or
    ``models.layouts.Layout``s, over what is inferred (``models.layouts``). resize_to_contract: bring the
    transformed image to the contract's size before the forward pass when it differs (needed for models with
    fixed-size layers); False feeds it at its own size (lucid's way, for models that take any size). fit: how it is
    brought to that size: "crop" (default: centre crop, or pad with grey 0.5, so the content keeps the scale the
    transforms gave it, as lucid feeds it) or "resize" (bilinear, which undoes ``random_scale``: every transformed
    image reached the model at 0.95 of its scale whatever the scale drawn; doc/optvis.md). programs: where the
    prepared networks of its steps are kept (a caller's ``ProgramCache``, e.g. a job's run context); default its
    own, so that every ``visualize()`` of this FeatureViz reuses them (a folded copy is made once).
    """

    def __init__(self, model: Union[nn.Module, str], objective, contract: Optional[InputContract] = None,
                 resize_to_contract: bool = True, layouts: Optional[Mapping[str, object]] = None,
                 input_mean: Optional[Sequence[float]] = None, input_std: Optional[Sequence[float]] = None,
                 size: Optional[int] = None, fit: str = "crop", programs: Optional[ProgramCache] = None):
        if isinstance(model, str):
            from dvtoolbox.models.registry import create_model

            model = create_model(model)
        if contract is None:
            model = as_model(model, input_mean, input_std, size)
        self.model = model
        self.contract = contract if contract is not None else model.input_contract
        self.objective: Objective = create_objective(objective, model=model)
        self.layouts = model_layouts(model, self.contract.size, layouts)
        self.resize_to_contract = resize_to_contract
        if fit not in FIT_MODES:
            raise UsageError(f"fit must be one of {', '.join(FIT_MODES)}, got {fit!r}", "fit")
        self.fit = fit
        self.history: List[float] = []  # the objective at each step of the last visualize()
        self.programs = ProgramCache() if programs is None else programs

    # ------------------------------------------------------------------------------------------------ steps
    def model_input(self, image: torch.Tensor, transform: Callable, generator: torch.Generator) -> torch.Tensor:
        """Phase 2: (N, 3|4, H, W) image in [0, 1] -> model pixel space (see the module docstring)."""
        t = transform(image, generator)
        if t.shape[1] == 4:
            t = collapse_alpha_random()(t, generator)
        if self.resize_to_contract and tuple(t.shape[-2:]) != tuple(self.contract.size):
            t = resize_bilinear(t, self.contract.size) if self.fit == "resize" else crop_or_pad(t, self.contract.size)
        return to_model_input(t, self.contract)

    def views_input(self, scene: torch.Tensor, transform: Callable, generator: torch.Generator,
                    views: int) -> torch.Tensor:
        """Phase 2 with V = ``views``: V independently transformed copies of the (M, 3|4, H, W) scene, drawn in
        order v = 0 .. V-1 from ``generator``, concatenated to (V * M, 3, h, w), view v of image m at v*M + m."""
        if views == 1:
            return self.model_input(scene, transform, generator)
        copies = [self.model_input(scene, transform, generator) for _ in range(views)]
        sizes = sorted({tuple(c.shape[-2:]) for c in copies})
        if len(sizes) > 1:
            raise UsageError(f"views {views}: the transformed views have different sizes {sizes} and cannot share "
                             "one forward pass; resize them to the model's input size (resize_to_contract=True)",
                             "views", "resize_to_contract=True")
        return torch.cat(copies, dim=0)

    def evaluate(self, outputs: Mapping[str, torch.Tensor], image: torch.Tensor, views: int, m: int,
                 labels) -> torch.Tensor:
        """Phase 4: the mean over views of the objective on each view's outputs (see the module docstring)."""
        strict = self.objective.layers is not None
        values = [self.objective(Activations({**acts, INPUT: image}, labels, self.layouts))
                  for acts in split_views(outputs, views, m, strict)]
        for value in values:
            if value.dim() != 0:
                raise UsageError(f"objective {self.objective} returned shape {tuple(value.shape)}, not a scalar")
        return values[0] if views == 1 else torch.stack(values).mean()

    def visualize(self, param_f: Optional[Callable] = None, thresholds: Sequence[int] = (512,), lr: float = 0.05,
                  show_progress: bool = False, show_last_image: bool = False, optimizer: Optional[Callable] = None,
                  transforms: Optional[Sequence[Callable]] = None, seed: int = 0,
                  device: Union[str, torch.device, None] = None,
                  pre_transform: Optional[Callable] = None, regularizers: Optional[Regularizers] = None,
                  lr_schedule: Optional[LRSchedule] = None, views: int = 1,
                  execution: Execution = EAGER) -> List[np.ndarray]:
        """Optimize and return ``[images after step t for t in thresholds]``, each (N, H, W, C) float32 numpy in
        [0, 1] (C = 3, or 4 with alpha).

        param_f: ``() -> (params, image_f)`` (default ``get_image(W, H)`` of the contract size); called inside
        ``param_defaults(generator, device)``, so ``lambda: get_image(224, batch=2)`` is seeded by ``seed``.
        lr: Adam's learning rate, used when ``optimizer`` is None; optimizer: ``params -> torch.optim.Optimizer``.
        transforms: a list of transforms (default ``standard_transforms()``; ``[]`` for none). device: where to
        run (default the model's); the model is moved there (``nn.Module.to``, in place).
        show_progress: a tqdm bar with the objective. show_last_image: ``show_images`` of the last batch.
        pre_transform: ``(image, generator) -> (M, 3|4, H', W')`` applied to ``image_f()`` before the transforms
        (phase 1b), e.g. ``alpha.py``'s composite of a foreground over optimised backgrounds; the objective's
        ``"input"`` and the recorded images stay ``image_f()``'s.
        regularizers: DVT's post-step operations (``dvt.Regularizers``: decay, blur, percentile clips), for
        ``param_f`` = ``dvt.model_pixel_image`` only (a UsageError otherwise). lr_schedule: a DVT learning-rate
        policy (``dvt.LRSchedule``) that sets the optimizer's lr before each step (phase 5b).
        views: transformed copies of the image per step, one forward pass for all (phases 2 to 4; the module
        docstring has the rule); each step costs about ``views`` times as much. 1 is lucid's loop.
        execution: how the network part of a step runs (``dvtoolbox.device.Execution``; default eager, true
        float32): engine folded runs a copy with batch norms folded into convolutions, compiled traces the forward
        pass, the objective and their gradient to the model input (and to ``"input"``) into one compiled graph and
        backpropagates that gradient through the transforms; precision bf16 autocasts forward and backward.
        Engine graphs is the DVT loop's only (a UsageError here).
        """
        run = self._setup(param_f, check_thresholds(thresholds), lr, optimizer, transforms, seed, device, regularizers,
                          lr_schedule, check_views(views), pre_transform, execution)
        images, values = [], []
        was_training = self.model.training
        self.model.eval()
        try:
            with contextlib.ExitStack() as hooks:
                run.hooks = hooks
                bar = tqdm(range(1, run.steps[-1] + 1), disable=not show_progress, desc=str(self.objective)[:40])
                for step in bar:
                    value = self._step(run, step)                            # 1. to 6b.
                    values.append(value.detach())
                    if show_progress and (step % PROGRESS_EVERY == 0 or step == run.steps[-1]):
                        bar.set_postfix(objective=f"{value.item():.4g}")
                    if step in run.steps:                                    # 7. record
                        images.append(self._snapshot(run))
                        log.debug("step %d: objective %.6g", step, value.item())
        finally:                                                             # teardown: hooks (LayerCapture), mode
            self.model.train(was_training)
        self.history = torch.stack(values).cpu().tolist()
        if show_last_image:
            show_images(images[-1])
        return images

    def _setup(self, param_f, steps, lr, optimizer, transforms, seed, device, regularizers, lr_schedule, views,
               pre_transform, execution) -> "_Run":
        """The device, the seeded generator, the parameters (drawn from it), the optimizer, the transforms and the
        layers to capture, for ``visualize``'s arguments."""
        device = _model_device(self.model) if device is None else torch.device(device)
        self.model.to(device)
        generator = torch.Generator(device=device)
        generator.manual_seed(int(seed))
        with param_defaults(generator=generator, device=device):
            if param_f is None:
                h, w = self.contract.size
                params, image_f = get_image(w, h)
            else:
                params, image_f = param_f()
        params = list(params)
        if execution.engine == "graphs":
            raise UsageError("engine graphs replays the DVT loop's iterations (optimize_image.py); visualize's "
                             "steps draw random transforms: use engine compiled", "engine")
        execution = execution.on(device)
        reads = self.objective.layers
        names = sorted(reads - {INPUT}) if reads is not None else list(named_layers(self.model))
        network, _ = self.programs.get(  # prepared once (a folded copy) for every visualize() of this FeatureViz
            ProgramKey.of("render", tuple(names), None, execution, device),
            lambda: (CapturedNetwork(self.model, names, stop_when_complete=reads is not None, fold=execution.fold,
                                     memory_format=execution.memory_format(device)), None))
        run = _Run(steps=steps, views=views, generator=generator, params=params, image_f=image_f,
                   optimizer=optimizer(params) if optimizer is not None else torch.optim.Adam(params, lr=lr),
                   transform=compose(standard_transforms() if transforms is None else transforms),
                   pre_transform=pre_transform, regularizers=regularizers,
                   after_step=_after_step_hook(image_f, regularizers), lr_schedule=lr_schedule,
                   layer_names=names, network=network, execution=execution, device=device,
                   reads_input=reads is None or INPUT in reads)
        if execution.compiled:
            run.program = Program(lambda *t: self._value_and_gradients(run, *t), device, compiled=True,
                                  autocast_dtype=execution.autocast_dtype, name=f"objective {self.objective}")
        return run

    def _step(self, run: "_Run", step: int) -> torch.Tensor:
        """Phases 1 to 6b of one step (see the module docstring); returns the objective's value (0-dim)."""
        run.optimizer.zero_grad(set_to_none=True)
        image = run.image_f()                                                # 1. image
        scene = image if run.pre_transform is None else run.pre_transform(image, run.generator)  # 1b.
        x = self.views_input(scene, run.transform, run.generator, run.views)  # 2. transforms, pixel space
        run.m = scene.shape[0]
        if run.hooks is not None and step == 1:                              #    hooks set once for the loop
            run.hooks.enter_context(run.network.hooked(x))
        if run.program is None:
            with autocast(run.device, run.execution.autocast_dtype):
                outputs = run.network.forward(x)                             # 3. forward (to the last layer read)
                value = self.evaluate(outputs, image, run.views, run.m, self.contract.labels)  # 4.
            torch.autograd.backward(-value, inputs=run.params)               # 5. backward
        else:                                                                # 3.-5. one compiled graph to x, then
            inputs = (x, image) if run.reads_input else (x,)                 #    backward through the transforms
            value, *grads = run.program(*(t.detach() for t in inputs))
            torch.autograd.backward(inputs, [-g for g in grads], inputs=run.params)
        if run.lr_schedule is not None:                                      # 5b. DVT lr policy
            _set_lr(run.optimizer, run.lr_schedule(_ascent_gradients(run.params), value))
        run.optimizer.step()                                                 # 6. step
        if run.after_step is not None:                                       # 6b. DVT regularizers, clip
            run.after_step(step - 1, run.regularizers)
        return value

    def _value_and_gradients(self, run: "_Run", x: torch.Tensor, image: Optional[torch.Tensor] = None):
        """The compiled engine's step function: (value, d value / d x[, d value / d image])."""
        x = x.detach().requires_grad_(True)
        inputs = [x]
        if image is not None:
            image = image.detach().requires_grad_(True)
            inputs.append(image)
        value = self.evaluate(run.network.forward(x), image, run.views, run.m, self.contract.labels)
        return (value.detach(),) + tuple(torch.autograd.grad(value, inputs))

    @staticmethod
    def _snapshot(run: "_Run") -> np.ndarray:
        """Phase 7: the images now, (N, H, W, C) float32 numpy in [0, 1]."""
        with torch.no_grad():
            return to_numpy_images(run.image_f())


@dataclass
class _Run:
    """What one ``visualize`` call works with, from ``_setup``."""

    steps: List[int]
    views: int
    generator: torch.Generator
    params: List[torch.Tensor]
    image_f: Callable
    optimizer: torch.optim.Optimizer
    transform: Callable
    pre_transform: Optional[Callable]
    regularizers: Optional[Regularizers]
    after_step: Optional[Callable]
    lr_schedule: Optional[LRSchedule]
    layer_names: List[str]
    network: CapturedNetwork
    execution: Execution
    device: torch.device
    reads_input: bool
    program: Optional[Program] = None
    hooks: Optional[contextlib.ExitStack] = None
    m: int = 0
