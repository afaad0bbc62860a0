"""The input region of a unit: which pixels of the model input can change the unit at (y, x) of a layer.

Regions are half-open boxes ``Region(y0, y1, x0, x1)`` in model-input pixels (rows y0..y1-1, columns x0..x1-1),
clipped to the input: the exact receptive field, padding excluded.

Two ways to find it:

- ``geometric_field``: from the layer geometry. Forward hooks record, in execution order, every ``nn.Conv2d``,
  ``nn.MaxPool2d``, ``nn.AvgPool2d`` and Caffe pooling layer that runs before the layer (kernel, stride, padding,
  dilation, and the input / output grid sizes); the unit's box is pushed down through them, clipped to each layer's
  input at every step (the original's ``RegionComputer.convert_region`` clipped the box to each layer's output, which
  is the same box). Chains only: the recorded layers must form a chain of grid sizes from the input to the layer
  (each one's output size the next one's input size); otherwise (branches that change resolution, adaptive pooling,
  upsampling, a grid the hooks do not see) ``GeometryUnavailable`` is raised. Branches of equal grid sizes (an
  Inception block) pass the size check but are composed as if in series, which gives a box too large:
  ``receptive_field(method="auto")`` therefore checks the centre unit's box against the gradient support and uses the
  gradient where the two differ. A dilated layer is taken as its bounding box (its field has holes).
- ``gradient_field``: for any model, the bounding box of the nonzero rows / columns of d unit / d input, summed over
  a batch of seeded random inputs (a random combination of the channels at (y, x), so no channel is dead on all of
  them). By default the backward pass is made structural (``StructuralBackward``): ReLUs (``relu``, ``relu6``,
  ``hardtanh``) pass the gradient everywhere and max pooling spreads it over its whole window as average pooling
  does, so that the support no longer depends on which units the random input switched on. A lower bound all the
  same: a pixel whose every path has zero weight (or whose contributions cancel) is missed; with
  ``structural=False`` (the plain gradient), also a pixel that an inactive ReLU or an unselected max-pool input
  hides on every input of the batch.

A token layer (a transformer's NTC layout on its patch grid): the field of token (y, x) is its patch, the geometric
box through the patch embedding. Attention mixes the tokens, so the true field is the whole image; we return the
patch (as the crop shown beside the unit) and ``is_global=True`` to say so. A layer without a grid (NC): the whole
input.

``crop_boxes`` is the original's crop rule (``max_tracker.output_max_patches``): every crop of a layer has the size
of the centre unit's field, and a field cut by the image edge is padded with zeros on the side it was cut.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from dvtoolbox.errors import UsageError
from dvtoolbox.models.capture import LayerCapture, resolve_layer
from dvtoolbox.models.layouts import Layout, canonical

log = logging.getLogger(__name__)

Pair = Tuple[int, int]


class GeometryUnavailable(Exception):
    """The layer geometry does not determine the field (not a chain of known layers); the message says why."""


@dataclass(frozen=True)
class Region:
    """A half-open box of the model input: rows y0..y1-1, columns x0..x1-1."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def size(self) -> Pair:
        return self.y1 - self.y0, self.x1 - self.x0


@dataclass(frozen=True)
class Step:
    """One geometric layer on the path: kernel, stride, pad (top / left), dilation as (h, w) pairs; in_hw, out_hw:
    its input and output grid sizes."""

    name: str
    kernel: Pair
    stride: Pair
    pad: Pair
    dilation: Pair
    in_hw: Pair
    out_hw: Pair


def _pair(v) -> Pair:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _conv_pad(module: nn.Conv2d) -> Pair:
    if isinstance(module.padding, str):  # "valid" or "same" (PyTorch puts the odd extra pixel at the end)
        if module.padding == "valid":
            return 0, 0
        return tuple(d * (k - 1) // 2 for d, k in zip(module.dilation, module.kernel_size))
    return _pair(module.padding)


def _step_of(name: str, module: nn.Module, in_hw: Pair, out_hw: Pair) -> Optional[Step]:
    """The geometry of a module's call, or None for a module that has none (activations, norms, identities...)."""
    kind = type(module).__name__
    if isinstance(module, nn.Conv2d):
        return Step(name, _pair(module.kernel_size), _pair(module.stride), _conv_pad(module), _pair(module.dilation),
                    in_hw, out_hw)
    if isinstance(module, nn.MaxPool2d):
        return Step(name, _pair(module.kernel_size), _pair(module.stride or module.kernel_size), _pair(module.padding),
                    _pair(module.dilation), in_hw, out_hw)
    if isinstance(module, nn.AvgPool2d):
        return Step(name, _pair(module.kernel_size), _pair(module.stride or module.kernel_size), _pair(module.padding),
                    (1, 1), in_hw, out_hw)
    if kind == "CaffePooling":
        if module.global_pooling:
            return Step(name, in_hw, (1, 1), (0, 0), (1, 1), in_hw, out_hw)
        return Step(name, module.kernel, module.stride, module.pad, (1, 1), in_hw, out_hw)
    if isinstance(module, (nn.modules.conv._ConvTransposeNd, nn.modules.pooling._AdaptiveAvgPoolNd,
                           nn.modules.pooling._AdaptiveMaxPoolNd, nn.Upsample, nn.Fold, nn.Unfold)):
        raise GeometryUnavailable(f"{name} ({kind}) has no fixed kernel geometry")
    return None


def _input_like(model: nn.Module, size: Pair, batch: int = 1, seed: Optional[int] = None) -> torch.Tensor:
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    if seed is None:
        return torch.zeros((batch, 3) + tuple(size), device=device, dtype=dtype)
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((batch, 3) + tuple(size), generator=gen).to(device=device, dtype=dtype)


def record_steps(model: nn.Module, layer: str, size: Pair) -> Tuple[List[Step], Tuple[int, ...]]:
    """(the geometric steps run before ``layer``'s output exists, in execution order; the layer output's shape) for a
    forward pass of a zero input of ``size`` (H, W)."""
    target = resolve_layer(model, layer)
    steps: List[Step] = []
    problems: List[str] = []
    state = {"done": False, "shape": None}
    names = {module: name for name, module in model.named_modules()}

    def record(module, inputs, output):
        if state["done"] or not inputs or not torch.is_tensor(inputs[0]) or inputs[0].dim() != 4:
            return
        out = output[0] if isinstance(output, (tuple, list)) else output
        try:
            step = _step_of(names.get(module, "?"), module, tuple(inputs[0].shape[-2:]), tuple(out.shape[-2:]))
        except GeometryUnavailable as exc:
            problems.append(str(exc))
            return
        if step is not None:
            steps.append(step)

    def finish(module, inputs, output):
        if not state["done"]:
            out = output[0] if isinstance(output, (tuple, list)) else output
            state["done"], state["shape"] = True, tuple(out.shape)

    handles = [m.register_forward_hook(record) for m in model.modules() if m is not model]
    handles.append(target.register_forward_hook(finish))  # after the target's own record hook
    try:
        with torch.no_grad():
            model(_input_like(model, size))
    finally:
        for h in handles:
            h.remove()
    if problems:
        raise GeometryUnavailable(problems[0])
    if state["shape"] is None:
        raise UsageError(f"layer {layer!r} did not run in a forward pass of the model", "layer")
    return steps, state["shape"]


def check_chain(steps: List[Step], size: Pair, grid: Pair) -> None:
    """Raise GeometryUnavailable unless the steps chain the input ``size`` to the layer's ``grid``."""
    if not steps:
        if tuple(grid) != tuple(size):
            raise GeometryUnavailable(f"no geometric layer maps the {size} input to the {grid} grid")
        return
    if steps[0].in_hw != tuple(size):
        raise GeometryUnavailable(f"the first geometric layer {steps[0].name} reads a {steps[0].in_hw} grid, "
                                  f"not the {tuple(size)} input")
    for a, b in zip(steps, steps[1:]):
        if a.out_hw != b.in_hw:
            raise GeometryUnavailable(f"{a.name} -> {b.name}: grid {a.out_hw} then {b.in_hw}: not a chain")
    if steps[-1].out_hw != tuple(grid):
        raise GeometryUnavailable(f"the last geometric layer {steps[-1].name} gives a {steps[-1].out_hw} grid, "
                                  f"not the layer's {tuple(grid)}")


def push_down(steps: List[Step], box: Region) -> Region:
    """The input box that can influence ``box`` of the last step's output: through each step from the last, the
    box clipped to the step's output, then ``start * stride - pad`` .. ``(end - 1) * stride + dilation * (k - 1)
    + 1 - pad``, clipped to the step's input at the end."""
    y0, y1, x0, x1 = box.y0, box.y1, box.x0, box.x1
    for s in reversed(steps):
        (oh, ow), (ih, iw) = s.out_hw, s.in_hw
        y0, y1, x0, x1 = max(0, min(oh, y0)), max(0, min(oh, y1)), max(0, min(ow, x0)), max(0, min(ow, x1))
        y0, y1 = y0 * s.stride[0] - s.pad[0], (y1 - 1) * s.stride[0] + s.dilation[0] * (s.kernel[0] - 1) + 1 - s.pad[0]
        x0, x1 = x0 * s.stride[1] - s.pad[1], (x1 - 1) * s.stride[1] + s.dilation[1] * (s.kernel[1] - 1) + 1 - s.pad[1]
        y0, y1, x0, x1 = max(0, y0), min(ih, y1), max(0, x0), min(iw, x1)
    return Region(y0, y1, x0, x1)


def _default_layout(shape: Tuple[int, ...]) -> Layout:
    if len(shape) == 4:
        return Layout("NCHW")
    if len(shape) == 2:
        return Layout("NC")
    raise UsageError(f"the layer's output has shape {shape}: give its layout (NCHW, NHWC, NTC with a grid, NC)",
                     "layouts")


@dataclass(frozen=True)
class LayerGeometry:
    """What the fields of one layer need: its steps (chain-checked, or None where the geometry is unavailable and
    why), its grid (h, w) (None for NC), the input size, and whether its units see the whole image (tokens)."""

    steps: Optional[List[Step]]
    why_not: str
    grid: Optional[Pair]
    size: Pair
    is_global: bool


def layer_geometry(model: nn.Module, layer: str, size: Pair, layout: Optional[Layout] = None) -> LayerGeometry:
    """The geometry of ``layer`` for an input of ``size`` (H, W). layout: the layer's (default: NCHW for a 4-D
    output, NC for a 2-D one)."""
    try:
        steps, shape = record_steps(model, layer, size)
        why = ""
    except GeometryUnavailable as exc:
        steps, shape, why = None, None, str(exc)
    if shape is None:  # find the shape without the hooks that failed
        with LayerCapture(model, [layer]) as cap, torch.no_grad():
            model(_input_like(model, size))
        shape = tuple(cap.outputs[layer].shape)
    layout = layout or _default_layout(shape)
    if layout.kind == "NC":
        return LayerGeometry(None, "", None, tuple(size), False)
    if layout.kind == "NTC":
        if layout.grid is None:
            raise UsageError("a token layer's field needs its grid (an NTC layout with a grid)", "layouts")
        grid, tokens = layout.grid, True
        if steps is not None:  # the patch embedding: the geometric steps up to the last one giving the token grid
            last = max((i for i, s in enumerate(steps) if s.out_hw == tuple(grid)), default=None)
            steps = steps[:last + 1] if last is not None else None
            why = "" if last is not None else f"no geometric layer gives the {grid} token grid"
    else:
        grid, tokens = (shape[2], shape[3]) if layout.kind == "NCHW" else (shape[1], shape[2]), False
    if steps is not None:
        try:
            check_chain(steps, size, grid)
        except GeometryUnavailable as exc:
            steps, why = None, str(exc)
    return LayerGeometry(steps, why, tuple(grid), tuple(size), tokens)


def geometric_field(geometry: LayerGeometry, y: int, x: int) -> Region:
    """The exact field of the unit at (y, x) from the layer geometry; GeometryUnavailable where there is none.
    A layer without a grid: the whole input."""
    h, w = geometry.size
    if geometry.grid is None:
        return Region(0, h, 0, w)
    if geometry.steps is None:
        raise GeometryUnavailable(geometry.why_not)
    return push_down(geometry.steps, Region(y, y + 1, x, x + 1))


class _PassThroughReLU(torch.autograd.Function):
    """relu / hardtanh forward (the function given), the gradient unchanged backward."""

    @staticmethod
    def forward(ctx, x, func, kwargs):
        return func(x, **kwargs)

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None


class _MaxWithAverageBackward(torch.autograd.Function):
    """max_pool2d forward, avg_pool2d's backward (the gradient spread evenly over each window)."""

    @staticmethod
    def forward(ctx, x, kernel, stride, padding, ceil_mode):
        ctx.args, ctx.shape = (kernel, stride, padding, ceil_mode), x.shape
        return F.max_pool2d(x, kernel, stride, padding, 1, ceil_mode)

    @staticmethod
    def backward(ctx, grad):
        kernel, stride, padding, ceil_mode = ctx.args
        with torch.enable_grad():
            probe = torch.zeros(ctx.shape, dtype=grad.dtype, device=grad.device, requires_grad=True)
            (spread,) = torch.autograd.grad(F.avg_pool2d(probe, kernel, stride, padding, ceil_mode), probe, grad)
        return spread, None, None, None, None


class StructuralBackward(TorchFunctionMode):
    """Inside it, ReLUs pass every gradient and max pooling (``F.max_pool2d`` without dilation or indices) spreads
    it over its windows: the backward pass reaches every input pixel that some path of nonzero weights reaches."""

    _ACTIVATIONS = {F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_, F.relu6,
                    F.hardtanh, F.hardtanh_}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in self._ACTIVATIONS and args and torch.is_tensor(args[0]):
            kwargs.pop("inplace", None)
            plain = {F.relu_: F.relu, torch.relu_: torch.relu, torch.Tensor.relu_: torch.relu,
                     torch.Tensor.relu: torch.relu, F.hardtanh_: F.hardtanh}.get(func, func)
            extra = dict(zip(("min_val", "max_val"), args[1:3])) if plain is F.hardtanh else {}
            return _PassThroughReLU.apply(args[0], plain, {**extra, **kwargs})
        if func is F.max_pool2d:
            spread = self._spread_args(*args, **kwargs)
            if spread is not None:
                return _MaxWithAverageBackward.apply(args[0], *spread)
        return func(*args, **kwargs)

    @staticmethod
    def _spread_args(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
        if return_indices or _pair(dilation) != (1, 1):
            return None
        return kernel_size, stride if stride else kernel_size, padding, ceil_mode


def gradient_field(model: nn.Module, layer: str, y: int, x: int, size: Pair, layout: Optional[Layout] = None,
                   n_inputs: int = 2, seed: int = 0, structural: bool = True) -> Optional[Region]:
    """Bounding box of the support of d unit / d input at (y, x) (see the module docstring), over ``n_inputs``
    seeded random inputs of ``size``, through the structural backward unless ``structural`` is False; None where
    the gradient is zero everywhere."""
    inputs = _input_like(model, size, n_inputs, seed).requires_grad_(True)
    with LayerCapture(model, [layer]) as cap, (StructuralBackward() if structural else contextlib.nullcontext()):
        model(inputs)
    out = cap.outputs[layer]
    grid = canonical(out, layout or _default_layout(tuple(out.shape)), layer)
    gen = torch.Generator().manual_seed(seed + 1)
    mix = torch.randn(grid.shape[1], generator=gen).to(grid)
    unit = grid[:, :, y, x] if grid.dim() == 4 else grid
    (grad,) = torch.autograd.grad((unit * mix).sum(), inputs)
    support = grad.detach().abs().sum((0, 1)) > 0
    rows, cols = torch.nonzero(support.any(1)).flatten(), torch.nonzero(support.any(0)).flatten()
    if len(rows) == 0:
        return None
    return Region(int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)


def receptive_field(model: nn.Module, layer: str, y: int, x: int, size: Pair, layout: Optional[Layout] = None,
                    method: str = "auto", geometry: Optional[LayerGeometry] = None) -> Region:
    """The field of unit (y, x) of ``layer`` for an input of ``size`` (H, W). method: "geometry" (raises
    GeometryUnavailable where there is none), "gradient", or "auto": the geometry where it is a chain whose centre
    unit's field equals its gradient support, the gradient otherwise."""
    if method not in ("auto", "geometry", "gradient"):
        raise ValueError(f"method must be 'auto', 'geometry' or 'gradient', got {method!r}")
    if method == "gradient":
        return gradient_field(model, layer, y, x, size, layout) or Region(0, size[0], 0, size[1])
    geometry = geometry or layer_geometry(model, layer, size, layout)
    if method == "geometry" or geometry_agrees(model, layer, geometry, layout):
        return geometric_field(geometry, y, x)
    return gradient_field(model, layer, y, x, size, layout) or Region(0, size[0], 0, size[1])


def geometry_agrees(model: nn.Module, layer: str, geometry: LayerGeometry, layout: Optional[Layout] = None) -> bool:
    """Whether the geometric field of the layer's centre unit equals its gradient support (a check that the chain
    is the real path); a layer without a grid agrees; a token layer's patch is taken as its field."""
    if geometry.grid is None or geometry.is_global:
        return geometry.grid is None or geometry.steps is not None
    if geometry.steps is None:
        log.info("layer %s: no geometric field (%s); using the gradient's support", layer, geometry.why_not)
        return False
    cy, cx = geometry.grid[0] // 2, geometry.grid[1] // 2
    agrees = geometric_field(geometry, cy, cx) == gradient_field(model, layer, cy, cx, geometry.size, layout)
    if not agrees:
        log.info("layer %s: the geometric field differs from the gradient's support; using the gradient", layer)
    return agrees


# ------------------------------------------------------------------------------------------ the original's crop rule


@dataclass(frozen=True)
class CropBox:
    """Where a field goes in its crop: input[:, src.y0:src.y1, src.x0:src.x1] -> crop[:, dst.y0:dst.y1, ...] of a
    zero crop of ``size`` (h, w)."""

    src: Region
    dst: Region
    size: Pair


def crop_box(field: Region, crop_size: Pair) -> CropBox:
    """The original's rule: a field smaller than ``crop_size`` (cut by the image edge) is placed at the end of the
    crop when it starts at row / column 0, at the start otherwise (the original's out_ii_start / out_ii_end). A
    field larger than the crop (possible only with gradient fields) keeps its first rows / columns."""
    sh, sw = crop_size
    field = Region(field.y0, min(field.y1, field.y0 + sh), field.x0, min(field.x1, field.x0 + sw))
    fh, fw = field.size
    y_out, x_out = sh - fh, sw - fw
    dy0, dy1 = (y_out, sh) if field.y0 == 0 else (0, sh - y_out)
    dx0, dx1 = (x_out, sw) if field.x0 == 0 else (0, sw - x_out)
    return CropBox(field, Region(dy0, dy1, dx0, dx1), (sh, sw))


def max_crop_size(geometry: LayerGeometry, field_of=None) -> Pair:
    """The crop size of a layer (the original's get_max_data_extent): the field of the centre unit
    (grid h // 2, w // 2) for a grid, the whole input otherwise. field_of: (y, x) -> Region (default: geometric)."""
    if geometry.grid is None:
        return geometry.size
    field_of = field_of or (lambda y, x: geometric_field(geometry, y, x))
    return field_of(geometry.grid[0] // 2, geometry.grid[1] // 2).size


def field_function(model: nn.Module, layer: str, size: Pair, layout: Optional[Layout] = None,
                   method: str = "auto") -> Tuple[LayerGeometry, "callable"]:
    """(the layer's geometry, (y, x) -> Region) with the method decided once for the layer (see receptive_field):
    "auto" checks the centre unit once, then uses the geometry or the gradient for every unit."""
    if method not in ("auto", "geometry", "gradient"):
        raise ValueError(f"method must be 'auto', 'geometry' or 'gradient', got {method!r}")
    geometry = layer_geometry(model, layer, size, layout)
    if method == "geometry" or (method == "auto" and geometry_agrees(model, layer, geometry, layout)):
        return geometry, lambda y, x: geometric_field(geometry, y, x)
    whole = Region(0, size[0], 0, size[1])
    if geometry.grid is None:
        return geometry, lambda y, x: whole

    @functools.lru_cache(maxsize=None)
    def by_gradient(y: int, x: int) -> Region:  # one backward pass per position, not per crop
        return gradient_field(model, layer, y, x, size, layout) or whole

    return geometry, by_gradient
