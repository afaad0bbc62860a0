"""Where a layer's channels are: the layout of its output, and one way to read channels from any layout.

Layouts (the batch first in each):

- ``NCHW``: channels, then a spatial grid (convolutions, pooling, batch norm);
- ``NC``: channels only (fully connected layers, logits);
- ``NHWC``: a grid, channels last (ConvNeXt's and Swin's internal layers, a ``Linear`` or ``LayerNorm`` on a
  4-D tensor);
- ``NTC``: transformer tokens, channels last: ``prefix`` class / register tokens, then the patch tokens in row-major
  order on a ``grid`` (h, w).

``canonical(t, layout)`` turns a layer output into channels first: (N, C, H, W) for a grid (the patch tokens of a
token layer on their grid; its prefix tokens are left out unless ``include_prefix``), (N, C) for ``NC``. Every
objective and the DVT push read channels through it, so a channel is always the feature, never a token or a row.

``infer_layouts(model, size, names)`` runs one forward pass with hooks on every module and decides each output's
layout, first rule that applies (rules 1-6 and the first half of 7 follow from what is known; the second half of 7
and rule 8 are heuristics, shape matches that a model can fool: declare the layout where they are wrong):

1. the module's own ``output_layout`` attribute (a module may say it);
2. a 2-D output is NC;
3. a module that returns a tensor another module produced (a container) keeps that tensor's layout;
4. a type whose output layout is fixed: convolutions, pools, batch norm and friends give NCHW; ``Linear``, and
   ``LayerNorm`` over the last dimension, act on the last dimension (NHWC / NTC by rank); a ``LayerNorm`` over
   dimension 1 of a 4-D tensor (timm's LayerNorm2d) gives NCHW;
5. a ``Permute``-like module (with a ``dims`` attribute) permutes its input's layout;
6. a module whose output has its input's shape keeps its input's layout (activations, dropout, attention, residual
   blocks), and so does one whose inputs share a grid layout when it keeps their channel count (pooling, resizing)
   or their positions (a concatenation of channels);
7. a block that returns a new tensor of the shape of its last inner output whose layout is known (a residual sum)
   takes that layout; a parameter-free module that keeps the shape of an unnamed tensor (stochastic depth on a
   scaled branch) takes the layout of the latest output of that shape;
8. any other 3-D output (N, T, C) of a vision model is tokens: the model's ``prefix`` (timm's
   ``num_prefix_tokens``, torchvision's class token) or none, whichever leaves a square grid of patches.

What stays undecided is ``unknown``: reading channels from it is a one-line UsageError that shows the shape and how to
declare the layout (``layouts={"name": "NHWC"}``; ``--layout name=NHWC``). A model may declare its own layouts in a
``layer_layouts`` attribute; declarations win. ``model_layouts(model, size)`` does all this for a model's layers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Dict, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from dvtoolbox.errors import UsageError
from dvtoolbox.models.input_size import size_errors

KINDS = ("NCHW", "NC", "NHWC", "NTC")
UNKNOWN = "unknown"
MAX_TOKENS = 10**6  # the largest prefix or grid side a --layout may give (no layer has more tokens)
CHANNELS_FIRST_4D = (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
                     nn.AdaptiveMaxPool2d, nn.LocalResponseNorm, nn.Upsample, nn.ZeroPad2d, nn.ReflectionPad2d,
                     nn.InstanceNorm2d, nn.GroupNorm)


def _is_count(value, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


@dataclass(frozen=True)
class Layout:
    """kind: one of KINDS or "unknown"; prefix, grid: a token layout's leading non-patch tokens and (h, w) patch
    grid; include_prefix: ``canonical`` keeps the prefix tokens (then a token layer reads as (N, C, T), without
    a grid)."""

    kind: str
    prefix: int = 0
    grid: Optional[Tuple[int, int]] = None
    include_prefix: bool = False

    def __post_init__(self):
        if self.kind not in KINDS + (UNKNOWN,):
            raise UsageError(f"layout must be one of {', '.join(KINDS)}, got {self.kind!r}", "layout")
        if isinstance(self.grid, list):
            object.__setattr__(self, "grid", tuple(self.grid))
        if not _is_count(self.prefix, 0):
            raise UsageError(f"a token layout's prefix must be an integer >= 0, got {self.prefix!r}", "layout")
        if self.grid is not None and not (isinstance(self.grid, tuple) and len(self.grid) == 2
                                          and all(_is_count(side, 1) for side in self.grid)):
            raise UsageError(f"a token layout's grid must be (h, w), two integers >= 1, got {self.grid!r}", "layout")
        if (self.prefix or self.grid is not None) and self.kind != "NTC":
            raise UsageError(f"only an NTC layout has a prefix and a grid, got {self.kind} with prefix "
                             f"{self.prefix} and grid {self.grid}", "layout")

    def __str__(self) -> str:
        if self.kind != "NTC":
            return self.kind
        grid = f", grid {self.grid[0]}x{self.grid[1]}" if self.grid else ""
        return f"NTC (prefix {self.prefix}{grid})"


NCHW, NC = Layout("NCHW"), Layout("NC")


def canonical(t: torch.Tensor, layout: Layout, name: str = "layer") -> torch.Tensor:
    """A layer output with its channels first: (N, C, H, W), (N, C) or, for tokens without a grid, (N, C, T).
    Differentiable (views where possible). A shape that does not fit the layout is a one-line UsageError."""
    kind = layout.kind
    if t.dim() < 2:
        raise UsageError(f"layer {name!r} has output shape {tuple(t.shape)}: no channels to read", "layouts")
    if kind == UNKNOWN:
        raise UsageError(f"the layout of layer {name!r} (output shape {tuple(t.shape)}) is unknown: declare where "
                         f"its channels are, e.g. layouts={{{name!r}: 'NHWC'}} (NCHW, NHWC, NTC, NC)", "layouts")
    want = {"NCHW": 4, "NHWC": 4, "NC": 2, "NTC": 3}[kind]
    if t.dim() != want:
        raise UsageError(f"layer {name!r} is declared {layout} but its output has shape {tuple(t.shape)}",
                         "layouts")
    if kind in ("NCHW", "NC"):
        return t
    if kind == "NHWC":
        return t.permute(0, 3, 1, 2)
    if layout.prefix >= t.shape[1]:
        raise UsageError(f"layer {name!r} has {t.shape[1]} tokens, which leaves none after {layout.prefix} prefix "
                         "tokens", "layouts")
    tokens = t if layout.include_prefix else t[:, layout.prefix:]
    if layout.grid is None or layout.include_prefix:
        return tokens.transpose(1, 2)
    h, w = layout.grid
    if tokens.shape[1] != h * w:
        raise UsageError(f"layer {name!r} has {t.shape[1]} tokens, which is not {layout.prefix} prefix tokens and "
                         f"a {h}x{w} grid", "layouts")
    return tokens.reshape(t.shape[0], h, w, t.shape[2]).permute(0, 3, 1, 2)


def token_index(layout: Layout, y: int, x: int) -> int:
    """The index, among all tokens, of the patch token at row y, column x of a token layout's grid."""
    return layout.prefix + y * layout.grid[1] + x


def parse_layout(text: str) -> Tuple[str, Layout]:
    """``NAME=KIND`` (``KIND``: NCHW, NC, NHWC, or NTC with optional ``:prefix=P`` and ``:grid=HxW``, each at most
    once; P an integer >= 0, H and W integers >= 1, at most MAX_TOKENS), as the command lines' ``--layout`` takes
    it: (name, Layout). Anything else is a one-line UsageError naming the text and the form."""
    match = re.fullmatch(r"\s*([^=\s]+)\s*=\s*(NCHW|NC|NHWC|NTC)((?::[a-z]+=[^:]*)*)\s*", str(text))
    if match is None:
        raise UsageError(f"layout {text!r}: write NAME=KIND, KIND one of {', '.join(KINDS)}, e.g. "
                         "'stages.1=NHWC' or 'blocks.3=NTC:prefix=1:grid=14x14'", "layout")
    name, kind, options = match.groups()
    pairs = [option.split("=", 1) for option in options.split(":")[1:]]
    keys = [key for key, _ in pairs]
    if (set(keys) - {"prefix", "grid"}) or len(set(keys)) != len(keys) or (keys and kind != "NTC"):
        raise UsageError(f"layout {text!r}: only NTC takes options, each at most once: prefix=P and grid=HxW",
                         "layout")
    values = dict(pairs)
    prefix = _layout_number(text, "prefix", values.get("prefix", "0"), 0)
    grid = None
    if "grid" in values:
        sides = values["grid"].split("x")
        if len(sides) != 2:
            raise UsageError(f"layout {text!r}: grid is HxW, two integers >= 1, e.g. 14x14", "layout")
        grid = tuple(_layout_number(text, "grid", side, 1) for side in sides)
    return name, Layout(kind, prefix=prefix, grid=grid)


def _layout_number(text: str, what: str, digits: str, low: int) -> int:
    """One number of a ``--layout`` option: decimal digits, in [low, MAX_TOKENS]."""
    if not re.fullmatch(r"[0-9]{1,9}", digits) or not low <= int(digits) <= MAX_TOKENS:
        form = "P, an integer >= 0" if what == "prefix" else "HxW, two integers >= 1"
        raise UsageError(f"layout {text!r}: {what} is {form} (at most {MAX_TOKENS}), got {digits!r}", "layout")
    return int(digits)



# ---------------------------------------------------------------------------------------------------- inference


def model_prefix_tokens(model: nn.Module) -> int:
    """Class and register tokens a transformer puts before its patch tokens: timm's ``num_prefix_tokens``,
    torchvision's ``class_token``, 0 when the model says nothing."""
    for module in model.modules():
        if isinstance(getattr(module, "num_prefix_tokens", None), int):
            return module.num_prefix_tokens
        if isinstance(getattr(module, "class_token", None), torch.Tensor):
            return 1
    return 0


def _square_grid(tokens: int, prefix: int) -> Optional[Tuple[int, int]]:
    side = math.isqrt(max(tokens - prefix, 0))
    return (side, side) if side * side == tokens - prefix and side > 0 else None


class _Probe:
    """One forward pass's bookkeeping for ``infer_layouts``: the layout of each tensor seen, by identity."""

    def __init__(self, prefix: int):
        self.prefix = prefix
        self.tensors: Dict[int, Tuple[torch.Tensor, Layout]] = {}   # id -> (tensor kept alive, layout)
        self.finished: list = []                                     # (module, tensor, layout) in finishing order
        self.layouts: Dict[str, Layout] = {}
        self.shapes: Dict[str, Tuple[int, ...]] = {}                # the first output of each name, no batch

    def known(self, t: torch.Tensor) -> Optional[Layout]:
        entry = self.tensors.get(id(t))
        return entry[1] if entry is not None and entry[0] is t else None

    def by_rank(self, t: torch.Tensor) -> Layout:
        """Channels last by rank: (N, C) NC, (N, T, C) tokens, (N, H, W, C) NHWC."""
        if t.dim() == 2:
            return NC
        if t.dim() == 3:
            return self.tokens(t)
        return Layout("NHWC") if t.dim() == 4 else Layout(UNKNOWN)

    def grid_inputs(self, tensors, t: torch.Tensor) -> Optional[Layout]:
        """Inputs all NCHW (or all NHWC) and a 4-D output that keeps their channel count (pooling, resizing) or their
        positions (a concatenation of channels): the same layout."""
        layouts = {self.known(i) for i in tensors}
        if t.dim() != 4 or len(layouts) != 1 or None in layouts:
            return None
        (layout,) = layouts
        if layout.kind not in ("NCHW", "NHWC") or any(i.dim() != 4 for i in tensors):
            return None
        c, space = (1, (2, 3)) if layout.kind == "NCHW" else (3, (1, 2))
        keeps_channels = all(i.shape[c] == t.shape[c] for i in tensors)
        keeps_positions = all(i.shape[d] == t.shape[d] for i in tensors for d in space)
        return layout if keeps_channels or keeps_positions else None

    def tokens(self, t: torch.Tensor) -> Layout:
        """(N, T, C) tokens: the model's prefix tokens then a square grid, or no prefix and a square grid (the patch
        embedding, before the class token joins); unknown when both or neither fit."""
        fits = [p for p in {self.prefix, 0} if _square_grid(t.shape[1], p) is not None]
        if len(fits) != 1:
            return Layout(UNKNOWN)
        return Layout("NTC", prefix=fits[0], grid=_square_grid(t.shape[1], fits[0]))

    def decide(self, module: nn.Module, inputs: tuple, t: torch.Tensor, start: int) -> Layout:
        tensors = [i for i in inputs if isinstance(i, torch.Tensor)]
        first = tensors[0] if tensors else None
        in_layout = self.known(first) if first is not None else None
        in_layout = None if in_layout is not None and in_layout.kind == UNKNOWN else in_layout
        same = self.known(t)
        declared = getattr(module, "output_layout", None)
        if declared is not None:                                        # a module that says it
            return declared if isinstance(declared, Layout) else Layout(str(declared))
        if t.dim() == 2:
            return NC
        if same is not None and same.kind != UNKNOWN:                   # a container returning a child's output
            return same
        if isinstance(module, CHANNELS_FIRST_4D) and t.dim() == 4:
            return NCHW
        if isinstance(module, nn.Linear) or (isinstance(module, nn.LayerNorm) and
                                             tuple(t.shape[-len(module.normalized_shape):]) ==
                                             tuple(module.normalized_shape)):
            return self.by_rank(t)                                      # acts on the last dimension
        if isinstance(module, nn.LayerNorm) and t.dim() == 4 and t.shape[1] == module.normalized_shape[0]:
            return NCHW                                                 # a channels-first LayerNorm (timm's 2d)
        if isinstance(module, (nn.Conv1d, nn.BatchNorm1d)) and t.dim() == 3:
            return Layout(UNKNOWN)                                      # (N, C, L): not a vision layout
        dims = getattr(module, "dims", None)
        if isinstance(dims, (list, tuple)):                             # a Permute
            order = "".join(in_layout.kind[d] for d in dims) if in_layout is not None and \
                in_layout.kind in ("NCHW", "NHWC") and sorted(dims) == [0, 1, 2, 3] else UNKNOWN
            return Layout(order if order in KINDS else UNKNOWN)
        if in_layout is not None and first.shape == t.shape:
            return in_layout                                            # keeps its input's shape: and layout
        grids = self.grid_inputs(tensors, t)
        if grids is not None:
            return grids
        for _, inner_t, inner_layout in reversed(self.finished[start:]):  # a residual sum: the last inner output
            if inner_t.shape == t.shape and inner_layout.kind != UNKNOWN:    # of the same shape
                return inner_layout
        if first is not None and first.shape == t.shape and not any(True for _ in module.parameters()):
            for _, earlier_t, earlier_layout in reversed(self.finished):  # element-wise on an unnamed tensor: the
                if earlier_t.shape == t.shape and earlier_layout.kind != UNKNOWN:  # latest output of that shape
                    return earlier_layout
        return self.tokens(t) if t.dim() == 3 else Layout(UNKNOWN)      # (N, T, C): a vision model's tokens


def infer_layouts(model: nn.Module, size: Tuple[int, int], names: Mapping[str, nn.Module],
                  declared: Optional[Mapping[str, Union[str, Layout]]] = None,
                  device: Union[str, torch.device] = "cpu") -> Dict[str, Layout]:
    """The layout of every named module's output (see the module docstring), for a (1, 3, *size) input.
    names: the layers by name (``capture.named_layers``); declared: layouts that win over inference."""
    return _survey(model, size, names, declared, device)[1]


def _survey(model: nn.Module, size: Tuple[int, int], names: Mapping[str, nn.Module],
            declared: Optional[Mapping[str, Union[str, Layout]]], device,
            setting: str = "size") -> Tuple[Dict[str, Tuple[int, ...]], Dict[str, Layout]]:
    from dvtoolbox.models.capture import first_tensor

    probe = _Probe(model_prefix_tokens(model))
    module_names = {id(m): n for n, m in names.items()}
    starts: Dict[int, list] = {}

    def pre_hook(module, inputs):
        starts.setdefault(id(module), []).append(len(probe.finished))

    def hook(module, inputs, output):
        start = starts[id(module)].pop()
        t = first_tensor(output)
        if not isinstance(t, torch.Tensor):
            return
        layout = probe.decide(module, inputs, t, start)
        name = module_names.get(id(module))
        if name is not None and name not in probe.layouts:
            probe.layouts[name] = layout
            probe.shapes[name] = tuple(t.shape[1:])
        probe.tensors[id(t)] = (t, layout)
        probe.finished.append((module, t, layout))

    modules = list(model.modules())
    handles = [m.register_forward_pre_hook(pre_hook) for m in modules] + \
        [m.register_forward_hook(hook) for m in modules]
    try:
        with torch.no_grad(), size_errors(model, size, setting):
            x = torch.zeros((1, 3) + tuple(size), device=device)
            probe.tensors[id(x)] = (x, NCHW)
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    layouts = probe.layouts
    for name, layout in (declared or {}).items():
        layouts[name] = layout if isinstance(layout, Layout) else Layout(str(layout))
    return probe.shapes, layouts


def model_layouts(model: nn.Module, size: Tuple[int, int],
                  declared: Optional[Mapping[str, Union[str, Layout]]] = None,
                  setting: str = "size") -> Dict[str, Layout]:
    """The layout of every layer of ``model`` (``capture.named_layers``), probed with one (1, 3, *size) input on
    the model's device; the model's own ``layer_layouts`` and then ``declared`` win over inference. A model that
    refuses the size is a one-line UsageError naming ``setting`` (``input_size.size_errors``)."""
    return survey_layers(model, size, declared, setting)[1]


def survey_layers(model: nn.Module, size: Tuple[int, int],
                  declared: Optional[Mapping[str, Union[str, Layout]]] = None,
                  setting: str = "size") -> Tuple[Dict[str, Tuple[int, ...]], Dict[str, Layout]]:
    """``model_layouts`` and, from the same forward pass, each layer's output shape without the batch (the first
    output of a layer that runs several times), in the order the layers finish."""
    from dvtoolbox.models.capture import named_layers

    device = next(iter(list(model.parameters()) + list(model.buffers())), torch.empty(0)).device
    names = named_layers(model)
    for name in declared or {}:
        if name not in names:
            raise UsageError(f"layouts: {name!r} is not a layer of the model", "layouts")
    shapes, layouts = _survey(model, size, names, {**getattr(model, "layer_layouts", {}), **(declared or {})},
                              device, setting)
    for name in declared or {}:
        if name in shapes:
            check_layout_fits(name, shapes[name], layouts[name])
    return shapes, layouts


def check_layout_fits(name: str, shape: Tuple[int, ...], layout: Layout) -> None:
    """A declared layout must read the layer's real output ``shape`` (without the batch): the rank of its kind, a
    token layer's prefix and grid its tokens; else a one-line UsageError naming the layer, the layout and the
    shape."""
    try:
        canonical_shape(shape, layout, name)
    except UsageError as exc:
        raise UsageError(f"layouts: {exc}", "layouts") from None


def canonical_shape(shape: Tuple[int, ...], layout: Layout, name: str = "layer") -> Tuple[int, ...]:
    """The shape (without the batch) ``canonical`` gives for an output of ``shape`` (without the batch)."""
    return tuple(canonical(torch.empty((1,) + tuple(shape), device="meta"), layout, name).shape[1:])


def with_include_prefix(layout: Layout, include: bool) -> Layout:
    """The same layout reading a token layer's channels over all its tokens (``include``) or the patch tokens."""
    return replace(layout, include_prefix=include) if layout.kind == "NTC" else layout
