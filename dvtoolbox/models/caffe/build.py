"""A Caffe deploy net (prototxt + optional caffemodel) as a plain ``nn.Module`` whose blobs are reachable by name.

``load_caffe_model(deploy_proto, net_weights)`` reads the prototxt (V1 or V2), checks every layer and every
parameter blob, works out each blob's shape by Caffe's rules, and returns a ``CaffeNet``:

- ``model(x)``: x (N, 3, H, W) float32, BGR, mean-subtracted on the 0..255 scale (Caffe's ``data`` blob);
  returns the last blob (the top of the last layer, e.g. ``prob``). ``model(x, end="fc8")`` stops once that tap
  has been computed and returns it (Caffe's ``net.forward(end=...)``: layers run in file order up to there).
- One ``nn.Identity`` "blob tap" per blob, a direct submodule named by the blob (``conv1``, ``fc8``,
  ``inception_4c/output``); a '.' in a Caffe name becomes '_' (module names cannot hold '.'): see ``tap_name``.
  Hook a tap (``dvtoolbox.models.capture.LayerCapture``) to read the blob.
- In-place layers as in Caffe: a tap holds the blob's final value, so ``conv1`` is after its in-place ReLU.
  A blob that in-place layers overwrite also has one tap per version, ``<blob>@<layer that wrote it>``:
  ``conv2@conv2`` is the convolution's output before relu2, ``conv2@relu2`` after it (and equals ``conv2`` when
  relu2 is the last in-place layer). ``model.gradient_sources`` maps each such blob to its first version
  (``{"conv2": "conv2@conv2"}``): the original starts backward at the layer that produced the pushed blob, so the
  optimizer reads the value from ``conv2`` and starts the gradient at ``conv2@conv2``. To push "relu2" (backward
  through the ReLU), push the tap ``conv2@relu2``. ``model.caffe_layer_outputs`` maps every layer name to the tap
  of its (first) output.
- The layer modules live under ``model.layers`` by layer name (their weights: ``layers.conv1.weight``, ...).
- ``model.input_contract``: size from the prototxt's input, BGR, the given per-channel mean; ``label_layers``: the
  last InnerProduct's blob (or, without one, the blob the last Softmax reads) and the last Softmax's blob.

Every parameter is frozen (``requires_grad=False``): the optimizer needs gradients with respect to the image
only. Call ``model.requires_grad_(True)`` to train. The net runs in channels_last memory format (PyTorch's CPU
max pooling and inception-style nets are much faster so): 4-D blobs are channels_last tensors with the usual
(N, C, H, W) indexing, and the gradient to the input comes back in the input's own layout.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from dvtoolbox.errors import UsageError
from dvtoolbox.models.caffe import caffe_pb2
from dvtoolbox.models.caffe.layers import (CaffeBatchNorm, CaffeInnerProduct, CaffeLRN, CaffePooling, CaffeReshape,
                                           CaffeScale, Concat, Dropout, Eltwise, Split, StridedInputConv2d,
                                           caffe_pool_out, conv_out, reshape_shape)
from dvtoolbox.models.caffe.proto import (LayerSpec, blob_array, blob_shape, input_shape_of, layer_param,
                                          net_layers, read_net_binary, read_net_text, weights_by_layer)
from dvtoolbox.models.pixel_space import InputContract

log = logging.getLogger(__name__)

DEFAULT_MEAN = (104.0, 117.0, 123.0)  # ImageNet's per-channel mean, BGR, 0..255: the original's default
Shape = Tuple[int, ...]


def tap_name(caffe_name: str) -> str:
    """The module name of a Caffe blob or layer name: the name itself, with '.' (not allowed in module names)
    replaced by '_'."""
    return caffe_name.replace(".", "_")


def version_tap_name(blob: str, layer: str) -> str:
    """The tap of ``blob`` as ``layer`` wrote it (blobs rewritten by in-place layers only)."""
    return f"{tap_name(blob)}@{tap_name(layer)}"


# ------------------------------------------------------------------------------------------------ the module


class _ChannelsLast(torch.autograd.Function):
    """x in channels_last memory format (the same values); its gradient comes back in x's own layout."""

    @staticmethod
    def forward(ctx, x):
        ctx.was_contiguous = x.is_contiguous()
        return x.contiguous(memory_format=torch.channels_last)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous() if ctx.was_contiguous else grad



class CaffeNet(nn.Module):
    """A Caffe net (see the module docstring). Built by ``load_caffe_model``; not meant to be constructed directly.

    plan: one entry per layer in Caffe's order: (layer name, bottom slots, top slots, taps per top), where a slot
    is one version of one blob (slot 0 is the input) and the taps of a top are called in order on its value.
    """

    def __init__(self, name: str, layers: Dict[str, nn.Module], input_taps: Sequence[str],
                 plan: Sequence[Tuple[str, Tuple[int, ...], Tuple[int, ...], Tuple[Tuple[str, ...], ...]]],
                 n_slots: int, output_slot: int):
        super().__init__()
        self.caffe_name = name
        for tap in input_taps:
            self.add_module(tap, nn.Identity())
        for _layer, _bottoms, _tops, taps in plan:
            for tap in (t for seq in taps for t in seq):
                self.add_module(tap, nn.Identity())
        self.layers = nn.ModuleDict(layers)
        # Everything forward needs, resolved once: module objects, slot indices, when each tap is complete.
        self._input_taps = tuple(getattr(self, t) for t in input_taps)
        self._steps = []
        self._ends: Dict[str, Tuple[int, int]] = {t: (0, 0) for t in input_taps}
        for i, (layer, bottoms, tops, taps) in enumerate(plan):
            tap_modules = tuple(tuple(getattr(self, t) for t in seq) for seq in taps)
            self._steps.append((self.layers[layer], bottoms, tops, tap_modules, isinstance(self.layers[layer], Split)))
            for slot, seq in zip(tops, taps):
                for t in seq:
                    self._ends[t] = (i + 1, slot)
        self._n_slots = n_slots
        self._output_slot = output_slot
        self.blob_taps: Tuple[str, ...] = tuple(self._ends)

    def forward(self, x: torch.Tensor, end: Optional[str] = None) -> torch.Tensor:
        """x: (N, 3, H, W) float32, BGR, mean-subtracted 0..255. Returns the last blob, or the tap ``end``.

        The net runs in channels_last memory format (convolution weights are stored so): 4-D blobs are
        channels_last tensors, with the same values; the gradient to x comes back in x's own layout."""
        if end is None:
            n_steps, out_slot = len(self._steps), self._output_slot
        else:
            if end not in self._ends:
                raise UsageError(f"unknown blob {end!r}; valid blobs: {', '.join(self._ends)}")
            n_steps, out_slot = self._ends[end]
        values: List[Optional[torch.Tensor]] = [None] * self._n_slots
        if x.dim() == 4:
            x = _ChannelsLast.apply(x)
        for tap in self._input_taps:
            x = tap(x)
        values[0] = x
        for step in range(n_steps):
            module, bottoms, tops, taps, multi = self._steps[step]
            out = module(*[values[i] for i in bottoms])
            for slot, tap_seq, y in zip(tops, taps, out if multi else (out,)):
                for tap in tap_seq:
                    y = tap(y)
                values[slot] = y
        return values[out_slot]


# ------------------------------------------------------------------------------------------------ layer builders
# Each builder: (spec, bottom shapes) -> (module, top shapes, Caffe's parameter blob shapes in blob order).


def _canonical_axis(axis: int, ndim: int, spec: LayerSpec) -> int:
    if not -ndim <= axis < ndim:
        raise UsageError(f"layer {spec.name!r} ({spec.type}): axis {axis} is out of range for a {ndim}-D input")
    return axis % ndim


def _need_4d(spec: LayerSpec, shape: Shape) -> None:
    if len(shape) != 4:
        raise UsageError(f"layer {spec.name!r} ({spec.type}) needs a 4-D (N, C, H, W) input, got shape {shape}")


def _pair(spec: LayerSpec, what: str, values: Sequence[int], default: int) -> Tuple[int, int]:
    values = [int(v) for v in values]
    if not values:
        return default, default
    if len(values) == 1:
        return values[0], values[0]
    if len(values) == 2:
        return values[0], values[1]
    raise UsageError(f"layer {spec.name!r} ({spec.type}): {len(values)} {what} values given; only 2-D "
                     f"(1 or 2 values) is supported")


def _build_convolution(spec: LayerSpec, shapes: List[Shape]):
    p = layer_param(spec, "convolution_param", caffe_pb2.ConvolutionParameter)
    (shape,) = shapes
    _need_4d(spec, shape)
    if p.axis != 1:
        raise UsageError(f"layer {spec.name!r} (Convolution): axis {p.axis} is not supported (only 1)")
    if p.HasField("kernel_h") or p.HasField("kernel_w"):
        kernel = (int(p.kernel_h), int(p.kernel_w))
    else:
        kernel = _pair(spec, "kernel_size", p.kernel_size, 0)
    stride = ((int(p.stride_h), int(p.stride_w)) if p.HasField("stride_h") or p.HasField("stride_w")
              else _pair(spec, "stride", p.stride, 1))
    pad = ((int(p.pad_h), int(p.pad_w)) if p.HasField("pad_h") or p.HasField("pad_w")
           else _pair(spec, "pad", p.pad, 0))
    dilation = _pair(spec, "dilation", p.dilation, 1)
    group, n_out, channels = int(p.group), int(p.num_output), shape[1]
    if min(kernel) < 1 or min(stride) < 1 or min(dilation) < 1 or n_out < 1 or group < 1:
        raise UsageError(f"layer {spec.name!r} (Convolution): needs num_output, kernel, stride, dilation, group >= 1; "
                         f"got num_output {n_out}, kernel {kernel}, stride {stride}, dilation {dilation}, "
                         f"group {group}")
    if channels % group or n_out % group:
        raise UsageError(f"layer {spec.name!r} (Convolution): group {group} must divide the {channels} input "
                         f"channels and num_output {n_out}")
    out_hw = tuple(conv_out(s, k, st, pd, d) for s, k, st, pd, d in zip(shape[2:], kernel, stride, pad, dilation))
    if min(out_hw) < 1:
        raise UsageError(f"layer {spec.name!r} (Convolution): an input of {shape[2]}x{shape[3]} is smaller than the "
                         f"kernel {kernel} (pad {pad}, dilation {dilation})")
    # a strided convolution of the image: a faster backward pass to the image (see StridedInputConv2d)
    fast_input_grad = group == 1 and dilation == (1, 1) and stride[0] == stride[1] > 1 and channels <= 4
    # skip_init: no default initialisation (it would draw from torch's global RNG); the weights are always set
    module = nn.utils.skip_init(StridedInputConv2d if fast_input_grad else nn.Conv2d, channels, n_out, kernel, stride,
                                pad, dilation, group, bias=bool(p.bias_term)).to(memory_format=torch.channels_last)
    params = [(n_out, channels // group) + kernel] + ([(n_out,)] if p.bias_term else [])
    return module, [(shape[0], n_out) + out_hw], params


def _build_pooling(spec: LayerSpec, shapes: List[Shape]):
    p = layer_param(spec, "pooling_param", caffe_pb2.PoolingParameter)
    (shape,) = shapes
    _need_4d(spec, shape)
    method = caffe_pb2.PoolingParameter.PoolMethod.Name(p.pool)
    if method not in ("MAX", "AVE"):
        raise UsageError(f"layer {spec.name!r} (Pooling): pool method {method} is not supported (MAX, AVE)")
    if p.global_pooling:
        module = CaffePooling(method, shape[2:], (1, 1), (0, 0), global_pooling=True)
        return module, [shape[:2] + (1, 1)], []
    if p.HasField("kernel_size"):
        kernel = (int(p.kernel_size),) * 2
    elif p.HasField("kernel_h") and p.HasField("kernel_w"):
        kernel = (int(p.kernel_h), int(p.kernel_w))
    else:
        raise UsageError(f"layer {spec.name!r} (Pooling): needs kernel_size (or kernel_h and kernel_w)")
    pad = (int(p.pad_h), int(p.pad_w)) if p.HasField("pad_h") or p.HasField("pad_w") else (int(p.pad),) * 2
    stride = ((int(p.stride_h), int(p.stride_w)) if p.HasField("stride_h") or p.HasField("stride_w")
              else (int(p.stride),) * 2)
    if min(kernel) < 1 or min(stride) < 1 or pad[0] >= kernel[0] or pad[1] >= kernel[1]:
        raise UsageError(f"layer {spec.name!r} (Pooling): needs kernel, stride >= 1 and pad < kernel; "
                         f"got kernel {kernel}, stride {stride}, pad {pad}")
    out_hw = tuple(caffe_pool_out(s, k, st, pd) for s, k, st, pd in zip(shape[2:], kernel, stride, pad))
    if min(out_hw) < 1:
        raise UsageError(f"layer {spec.name!r} (Pooling): an input of {shape[2]}x{shape[3]} is smaller than the "
                         f"kernel {kernel}")
    return CaffePooling(method, kernel, stride, pad), [shape[:2] + out_hw], []


def _build_lrn(spec: LayerSpec, shapes: List[Shape]):
    p = layer_param(spec, "lrn_param", caffe_pb2.LRNParameter)
    (shape,) = shapes
    _need_4d(spec, shape)
    if p.local_size % 2 != 1:
        raise UsageError(f"layer {spec.name!r} (LRN): local_size must be odd, got {p.local_size}")
    region = caffe_pb2.LRNParameter.NormRegion.Name(p.norm_region)
    return CaffeLRN(int(p.local_size), float(p.alpha), float(p.beta), float(p.k), region), [shape], []


def _build_relu(spec: LayerSpec, shapes: List[Shape]):
    slope = float(layer_param(spec, "relu_param", caffe_pb2.ReLUParameter).negative_slope)
    return (nn.ReLU() if slope == 0 else nn.LeakyReLU(slope)), [shapes[0]], []


def _build_inner_product(spec: LayerSpec, shapes: List[Shape]):
    p = layer_param(spec, "inner_product_param", caffe_pb2.InnerProductParameter)
    (shape,) = shapes
    axis = _canonical_axis(p.axis, len(shape), spec)
    k, n = int(np.prod(shape[axis:], dtype=np.int64)), int(p.num_output)
    if n < 1:
        raise UsageError(f"layer {spec.name!r} (InnerProduct): needs num_output >= 1, got {n}")
    module = CaffeInnerProduct(k, n, bool(p.bias_term), axis)
    module.caffe_transpose = bool(p.transpose)
    params = [(k, n) if p.transpose else (n, k)] + ([(n,)] if p.bias_term else [])
    return module, [shape[:axis] + (n,)], params


def _build_concat(spec: LayerSpec, shapes: List[Shape]):
    p = layer_param(spec, "concat_param", caffe_pb2.ConcatParameter)
    axis = _canonical_axis(int(p.concat_dim) if p.HasField("concat_dim") else p.axis, len(shapes[0]), spec)
    for s in shapes[1:]:
        if len(s) != len(shapes[0]) or s[:axis] + s[axis + 1:] != shapes[0][:axis] + shapes[0][axis + 1:]:
            raise UsageError(f"layer {spec.name!r} (Concat): inputs of shapes {shapes} differ outside axis {axis}")
    top = list(shapes[0])
    top[axis] = sum(s[axis] for s in shapes)
    return Concat(axis), [tuple(top)], []


def _build_softmax(spec: LayerSpec, shapes: List[Shape]):
    axis = _canonical_axis(layer_param(spec, "softmax_param", caffe_pb2.SoftmaxParameter).axis, len(shapes[0]), spec)
    return nn.Softmax(dim=axis), [shapes[0]], []


def _build_eltwise(spec: LayerSpec, shapes: List[Shape]):
    p = layer_param(spec, "eltwise_param", caffe_pb2.EltwiseParameter)
    op = caffe_pb2.EltwiseParameter.EltwiseOp.Name(p.operation)
    if any(s != shapes[0] for s in shapes):
        raise UsageError(f"layer {spec.name!r} (Eltwise): inputs must have equal shapes, got {shapes}")
    coeffs = list(p.coeff)
    if coeffs and (op != "SUM" or len(coeffs) != len(shapes)):
        raise UsageError(f"layer {spec.name!r} (Eltwise): coeff needs operation SUM and one value per input "
                         f"({len(shapes)}), got {len(coeffs)} with {op}")
    return Eltwise(op, coeffs or None), [shapes[0]], []


def _build_split(spec: LayerSpec, shapes: List[Shape]):
    return Split(len(spec.top)), [shapes[0]] * len(spec.top), []


def _build_dropout(spec: LayerSpec, shapes: List[Shape]):
    return Dropout(), [shapes[0]], []


def _build_flatten(spec: LayerSpec, shapes: List[Shape]):
    p = layer_param(spec, "flatten_param", caffe_pb2.FlattenParameter)
    (shape,) = shapes
    start, end = _canonical_axis(p.axis, len(shape), spec), _canonical_axis(p.end_axis, len(shape), spec)
    if end < start:
        raise UsageError(f"layer {spec.name!r} (Flatten): end_axis {p.end_axis} is before axis {p.axis}")
    top = shape[:start] + (int(np.prod(shape[start:end + 1], dtype=np.int64)),) + shape[end + 1:]
    return nn.Flatten(start, end), [top], []


def _build_reshape(spec: LayerSpec, shapes: List[Shape]):
    p = layer_param(spec, "reshape_param", caffe_pb2.ReshapeParameter)
    dims = tuple(int(d) for d in p.shape.dim)
    try:
        top = reshape_shape(shapes[0], dims, int(p.axis), int(p.num_axes))
    except ValueError as exc:
        raise UsageError(f"layer {spec.name!r} (Reshape): {exc}") from None
    return CaffeReshape(dims, int(p.axis), int(p.num_axes)), [top], []


def _build_batch_norm(spec: LayerSpec, shapes: List[Shape]):
    p = layer_param(spec, "batch_norm_param", caffe_pb2.BatchNormParameter)
    shape = shapes[0]
    channels = shape[1] if len(shape) > 1 else 1
    use_global = bool(p.use_global_stats) if p.HasField("use_global_stats") else True  # Caffe's TEST default
    return CaffeBatchNorm(channels, float(p.eps), use_global), [shape], [(channels,), (channels,), (1,)]


def _build_scale(spec: LayerSpec, shapes: List[Shape]):
    p = layer_param(spec, "scale_param", caffe_pb2.ScaleParameter)
    shape = shapes[0]
    axis = _canonical_axis(p.axis, len(shape), spec) if len(shape) else 0
    if len(shapes) == 2:
        scale_shape = shapes[1]
        if shape[axis:axis + len(scale_shape)] != scale_shape:
            raise UsageError(f"layer {spec.name!r} (Scale): the scale of shape {scale_shape} does not fit the input "
                             f"{shape} at axis {axis}")
        module = CaffeScale(axis, None, scale_shape if p.bias_term else None, len(shape))
        return module, [shape], ([scale_shape] if p.bias_term else [])
    scale_shape = shape[axis:] if p.num_axes == -1 else shape[axis:axis + p.num_axes]
    if p.num_axes < -1 or axis + len(scale_shape) > len(shape) or len(scale_shape) != (
            len(shape) - axis if p.num_axes == -1 else p.num_axes):
        raise UsageError(f"layer {spec.name!r} (Scale): num_axes {p.num_axes} does not fit the input {shape}")
    module = CaffeScale(axis, scale_shape, scale_shape if p.bias_term else None, len(shape))
    return module, [shape], [scale_shape] * (2 if p.bias_term else 1)


def _build_sigmoid(spec: LayerSpec, shapes: List[Shape]):
    return nn.Sigmoid(), [shapes[0]], []


def _build_tanh(spec: LayerSpec, shapes: List[Shape]):
    return nn.Tanh(), [shapes[0]], []


BUILDERS: Dict[str, Callable] = {
    "Convolution": _build_convolution, "Pooling": _build_pooling, "LRN": _build_lrn, "ReLU": _build_relu,
    "InnerProduct": _build_inner_product, "Dropout": _build_dropout, "Concat": _build_concat,
    "Softmax": _build_softmax, "Eltwise": _build_eltwise, "Split": _build_split, "Flatten": _build_flatten,
    "Reshape": _build_reshape, "BatchNorm": _build_batch_norm, "Scale": _build_scale, "Sigmoid": _build_sigmoid,
    "TanH": _build_tanh,
}
SUPPORTED_TYPES: Tuple[str, ...] = ("Input",) + tuple(BUILDERS)
# How many bottoms each type takes: (min, max); None = no upper limit.
_N_BOTTOMS = {"Concat": (1, None), "Eltwise": (2, None), "Scale": (1, 2)}


# ------------------------------------------------------------------------------------------------ parameters


def _set_params(module: nn.Module, spec: LayerSpec, arrays: Sequence[np.ndarray]) -> None:
    """Copy Caffe's parameter blobs (already in the expected shapes) into the module."""
    tensors = [torch.from_numpy(np.ascontiguousarray(a, np.float32)) for a in arrays]
    with torch.no_grad():
        if spec.type == "BatchNorm":
            factor = np.float32(0.0) if arrays[2].reshape(-1)[0] == 0 else np.float32(1.0) / arrays[2].reshape(-1)[0]
            module.running_mean.copy_(torch.from_numpy(arrays[0] * factor))
            module.running_var.copy_(torch.from_numpy(arrays[1] * factor))
            return
        weight = tensors[0]
        if getattr(module, "caffe_transpose", False):
            weight = weight.t()
        if module.weight is not None:
            module.weight.copy_(weight)
            rest = tensors[1:]
        else:  # two-input Scale: its only blob is the bias
            rest = tensors
        if rest:
            module.bias.copy_(rest[0])


def _random_arrays(spec: LayerSpec, shapes: Sequence[Shape], gen: torch.Generator) -> List[np.ndarray]:
    """Seeded stand-in weights: He-normal weights (std sqrt(2 / fan_in)), zero biases, unit scales, BatchNorm
    statistics mean 0 / variance 1."""
    if spec.type == "BatchNorm":
        return [np.zeros(shapes[0], np.float32), np.ones(shapes[1], np.float32), np.ones(shapes[2], np.float32)]
    if spec.type == "Scale":
        return [np.ones(s, np.float32) if i == 0 and len(spec.bottom) == 1 else np.zeros(s, np.float32)
                for i, s in enumerate(shapes)]
    weight_shape = shapes[0]
    fan_in = int(np.prod(weight_shape[1:], dtype=np.int64))
    if spec.type == "InnerProduct" and layer_param(spec, "inner_product_param",
                                                   caffe_pb2.InnerProductParameter).transpose:
        fan_in = weight_shape[0]
    weight = torch.randn(weight_shape, generator=gen, dtype=torch.float32) * math.sqrt(2.0 / max(fan_in, 1))
    return [weight.numpy()] + [np.zeros(s, np.float32) for s in shapes[1:]]


def _checked_arrays(spec: LayerSpec, expected: Sequence[Shape], blobs, source: str) -> List[np.ndarray]:
    """The layer's blobs from the caffemodel as arrays of the expected shapes; Caffe's shape check (a legacy 4-D
    blob matches when its shape is the expected one padded with leading 1s)."""
    need = ", ".join(str(s) for s in expected)
    if blobs is None:
        raise UsageError(f"layer {spec.name!r} ({spec.type}) has no weights in {source!r}; the prototxt needs "
                         f"{len(expected)} parameter blob(s): {need}")
    if len(blobs) != len(expected):
        have = ", ".join(str(blob_shape(b)[0]) for b in blobs)
        raise UsageError(f"layer {spec.name!r} ({spec.type}) has {len(blobs)} parameter blob(s) in {source!r} "
                         f"({have}); the prototxt needs {len(expected)}: {need}")
    arrays = []
    for j, (blob, want) in enumerate(zip(blobs, expected)):
        have, legacy = blob_shape(blob)
        fits = have == want or (legacy and len(want) <= 4 and have == (1,) * (4 - len(want)) + tuple(want))
        if not fits:
            raise UsageError(f"layer {spec.name!r} ({spec.type}): parameter blob {j} has shape {have} in {source!r}, "
                             f"the prototxt needs {tuple(want)}")
        arrays.append(blob_array(blob, f"layer {spec.name!r} parameter blob {j} in {source!r}").reshape(want))
    return arrays


# ------------------------------------------------------------------------------------------------ the graph


def _rule_met(rule, level: int, stages: set) -> bool:
    """Caffe's StateMeetsRule for a net in the TEST phase."""
    if rule.HasField("phase") and rule.phase != caffe_pb2.TEST:
        return False
    if rule.HasField("min_level") and level < rule.min_level:
        return False
    if rule.HasField("max_level") and level > rule.max_level:
        return False
    return all(s in stages for s in rule.stage) and not any(s in stages for s in rule.not_stage)


def _test_phase_layers(specs: List[LayerSpec], net: caffe_pb2.NetParameter, source: str) -> List[LayerSpec]:
    """The layers Caffe keeps for the TEST phase (its FilterNet), in order."""
    level, stages = int(net.state.level), set(net.state.stage)
    kept = []
    for spec in specs:
        include, exclude = spec.message.include, spec.message.exclude
        if len(include) and len(exclude):
            raise UsageError(f"{source}: layer {spec.name!r} has both include and exclude rules; Caffe allows one")
        if len(include):
            keep = any(_rule_met(r, level, stages) for r in include)
        else:
            keep = not any(_rule_met(r, level, stages) for r in exclude)
        if keep:
            kept.append(spec)
    return kept


def _find_input(net: caffe_pb2.NetParameter, specs: List[LayerSpec], source: str):
    """(input blob name, its shape, the name of the layer that declares it, the remaining layers)."""
    declared = input_shape_of(net, source)
    input_layers = [s for s in specs if s.type == "Input"]
    if len(input_layers) + (declared is not None) > 1 or any(len(s.top) != 1 for s in input_layers):
        raise UsageError(f"{source}: the net declares more than one input blob; only nets with one input blob "
                         f"(the image) are supported")
    if declared is not None:
        name, shape = declared
        producer = "input"
    elif input_layers:
        spec = input_layers[0]
        shapes = layer_param(spec, "input_param", caffe_pb2.InputParameter).shape
        if not len(shapes):
            raise UsageError(f"{source}: Input layer {spec.name!r} has no input_param shape")
        name, shape, producer = spec.top[0], tuple(int(d) for d in shapes[0].dim), spec.name
    else:
        raise UsageError(f"{source}: no input declared (needs 'input:' with input_shape/input_dim, or an Input "
                         f"layer); a deploy prototxt is expected, not a train/val one")
    if len(shape) != 4 or shape[1] != 3 or min(shape) < 1:
        raise UsageError(f"{source}: input {name!r} must have shape (N, 3, H, W) (a BGR image), got {shape}")
    return name, shape, producer, [s for s in specs if s.type != "Input"]


def build_caffe_net(net: caffe_pb2.NetParameter, source: str,
                    weights: Optional[Dict[str, Sequence[caffe_pb2.BlobProto]]], weights_source: Optional[str], *,
                    mean: Sequence[float] = DEFAULT_MEAN, labels: Optional[Sequence[str]] = None,
                    seed: int = 0) -> CaffeNet:
    """A CaffeNet for a parsed deploy NetParameter; ``weights`` by layer name (None: seeded random weights).
    Three steps: validate the layers, plan the blobs (who writes which, in place or not), build and load each
    layer in order."""
    specs = _test_phase_layers(net_layers(net, source), net, source)
    input_name, input_shape, input_producer, specs = _find_input(net, specs, source)
    _validate_layers(specs, source)
    writers = _blob_writers(specs, input_name, input_producer)
    built = _build_layers(specs, writers, input_name, input_shape, weights, weights_source, seed, source)
    return _assemble(net, specs, built, writers, input_name, input_shape, input_producer, mean, labels, source)


def _validate_layers(specs: Sequence, source: str) -> None:
    """Every layer of a supported type, with a top blob."""
    if not specs:
        raise UsageError(f"{source}: the net has no layers")
    for spec in specs:
        if spec.type not in BUILDERS:
            hint = " (data and loss layers belong in train/val nets, not deploy nets)" if (
                spec.type.endswith("Data") or spec.type.endswith("Loss") or spec.type == "Accuracy") else ""
            raise UsageError(f"layer {spec.name!r} has type {spec.type!r}, which is not supported{hint}; supported "
                             f"types: {', '.join(SUPPORTED_TYPES)}")
        if not spec.top:
            raise UsageError(f"layer {spec.name!r} ({spec.type}) has no top blob")


def _blob_writers(specs: Sequence, input_name: str, input_producer: str) -> Dict[str, List[str]]:
    """Each blob's writers in order (several for a blob that in-place layers rewrite: the last is its final
    version); a second writer that is not in place is a UsageError."""
    writers: Dict[str, List[str]] = {input_name: [input_producer]}
    for spec in specs:
        for i, top in enumerate(spec.top):
            in_place = i < len(spec.bottom) and spec.bottom[i] == top
            if top in writers and not in_place:
                raise UsageError(f"blob {top!r} is produced by both layer {writers[top][-1]!r} and layer "
                                 f"{spec.name!r}; Caffe allows a second writer only in place")
            writers.setdefault(top, []).append(spec.name)
    return writers


def _taps_for(writers: Dict[str, List[str]], blob: str, layer: str) -> Tuple[str, ...]:
    """The tap names of ``blob`` as ``layer`` writes it: the blob's own name, and for a rewritten blob also its
    version ``blob@layer`` (the final writer's version is the blob itself too)."""
    if len(writers[blob]) == 1:
        return (tap_name(blob),)
    version = version_tap_name(blob, layer)
    return (version, tap_name(blob)) if writers[blob][-1] == layer else (version,)


@dataclass
class _Built:
    """The layers in order and the plan that runs them: slot of every blob version, shapes, outputs."""

    layers: Dict[str, nn.Module]
    plan: List[tuple]
    slot_shapes: List[Shape]
    layer_outputs: Dict[str, str]


def _build_layers(specs: Sequence, writers: Dict[str, List[str]], input_name: str, input_shape: Shape,
                  weights: Optional[Dict[str, Sequence[caffe_pb2.BlobProto]]], weights_source: Optional[str],
                  seed: int, source: str) -> _Built:
    """Each layer's module (its weights loaded or seeded), wired to the slots of its bottom and top blobs."""
    gen = torch.Generator().manual_seed(seed)
    slot_of: Dict[str, int] = {input_name: 0}
    built = _Built(layers={}, plan=[], slot_shapes=[input_shape], layer_outputs={})
    used_weights = set()
    for spec in specs:
        key = tap_name(spec.name)
        if key in built.layers:
            raise UsageError(f"{source}: two layers are named {spec.name!r} (after mapping '.' to '_')")
        _check_wiring(spec, slot_of)
        module, top_shapes, param_shapes = BUILDERS[spec.type](spec, [built.slot_shapes[slot_of[b]]
                                                                       for b in spec.bottom])
        if param_shapes:
            if weights is None:
                arrays = _random_arrays(spec, param_shapes, gen)
            else:
                arrays = _checked_arrays(spec, param_shapes, weights.get(spec.name), weights_source)
                used_weights.add(spec.name)
            _set_params(module, spec, arrays)
        built.layers[key] = module
        bottoms = tuple(slot_of[b] for b in spec.bottom)
        tops, taps = [], []
        for top, shape in zip(spec.top, top_shapes):
            slot_of[top] = len(built.slot_shapes)
            built.slot_shapes.append(tuple(int(d) for d in shape))
            tops.append(slot_of[top])
            taps.append(_taps_for(writers, top, spec.name))
        built.layer_outputs[spec.name] = taps[0][0]
        built.plan.append((key, bottoms, tuple(tops), tuple(taps)))
    if weights is not None:
        ignored = sorted(set(weights) - used_weights)
        if ignored:
            log.debug("%s: ignoring weights of layers the prototxt lacks: %s", weights_source, ", ".join(ignored))
    return built


def _check_wiring(spec, slot_of: Dict[str, int]) -> None:
    """The layer's bottoms exist already, and it has as many bottoms and tops as its type takes."""
    for b in spec.bottom:
        if b not in slot_of:
            raise UsageError(f"layer {spec.name!r} ({spec.type}) reads blob {b!r}, which no earlier layer produces")
    lo, hi = _N_BOTTOMS.get(spec.type, (1, 1))
    if not lo <= len(spec.bottom) <= (hi or len(spec.bottom)):
        raise UsageError(f"layer {spec.name!r} ({spec.type}) has {len(spec.bottom)} bottom blobs; it takes "
                         f"{lo}" + ("" if hi == lo else f" to {hi}" if hi else " or more"))
    if spec.type not in ("Split",) and len(spec.top) != 1:
        raise UsageError(f"layer {spec.name!r} ({spec.type}) has {len(spec.top)} top blobs; it makes 1")


def _assemble(net, specs, built: _Built, writers, input_name: str, input_shape: Shape, input_producer: str,
              mean: Sequence[float], labels: Optional[Sequence[str]], source: str) -> CaffeNet:
    """The CaffeNet module with its blob taps, push semantics (gradient_sources) and input contract."""
    input_taps = _taps_for(writers, input_name, input_producer)
    all_taps = list(input_taps) + [t for entry in built.plan for seq in entry[3] for t in seq]
    _check_names(all_taps, list(built.layers), source)
    model = CaffeNet(net.name, built.layers, input_taps, built.plan, len(built.slot_shapes), built.plan[-1][2][0])
    model.gradient_sources = {tap_name(b): version_tap_name(b, ws[0]) for b, ws in writers.items() if len(ws) > 1}
    model.caffe_layer_outputs = built.layer_outputs
    model.blob_shapes = {t: built.slot_shapes[model._ends[t][1]][1:] for t in model.blob_taps}
    model.input_blob = input_name
    model.input_shape = input_shape
    model.input_contract = InputContract(
        size=(int(input_shape[2]), int(input_shape[3])), channel_order="BGR", mean=tuple(float(m) for m in mean),
        label_layers=_label_layers(specs), labels=tuple(labels) if labels is not None else None)
    model.requires_grad_(False)
    return model


# Attribute names a blob tap cannot take: nn.Module's and the ones CaffeNet and load_caffe_model set.
_MODEL_ATTRIBUTES = frozenset(dir(nn.Module())) | {
    "layers", "caffe_name", "blob_taps", "blob_shapes", "gradient_sources", "caffe_layer_outputs", "input_contract",
    "input_blob", "input_shape", "_input_taps", "_steps", "_ends", "_n_slots", "_output_slot"}
_CONTAINER_ATTRIBUTES = frozenset(dir(nn.ModuleDict()))


def _check_names(taps: List[str], layers: Sequence[str], source: str) -> None:
    """Every tap and layer name is a distinct, valid module name (UsageError otherwise)."""
    seen = set()
    for t in taps:
        if t in seen:
            raise UsageError(f"{source}: two blobs map to the module name {t!r} ('.' becomes '_'); rename one")
        if t in _MODEL_ATTRIBUTES or not t:
            raise UsageError(f"{source}: a blob cannot be named {t!r} here (the name of a module attribute); "
                             f"rename it in the prototxt")
        seen.add(t)
    for name in layers:
        if name in _CONTAINER_ATTRIBUTES or not name:
            raise UsageError(f"{source}: a layer cannot be named {name!r} here (the name of a module attribute); "
                             f"rename it in the prototxt")


def _label_layers(specs: List[LayerSpec]) -> Tuple[str, ...]:
    """The last InnerProduct's blob (without one: the blob the last Softmax reads) and the last Softmax's blob."""
    ips = [s for s in specs if s.type == "InnerProduct"]
    softmaxes = [s for s in specs if s.type == "Softmax"]
    names = []
    if ips:
        names.append(tap_name(ips[-1].top[0]))
    elif softmaxes:
        names.append(tap_name(softmaxes[-1].bottom[0]))
    if softmaxes:
        names.append(tap_name(softmaxes[-1].top[0]))
    return tuple(dict.fromkeys(names))


def load_caffe_model(deploy_proto: str, net_weights: Optional[str], *, mean: Sequence[float] = DEFAULT_MEAN,
                     labels: Optional[Sequence[str]] = None, seed: int = 0) -> CaffeNet:
    """The Caffe net of ``deploy_proto`` (V1 or V2 prototxt) with the weights of ``net_weights`` (V1 or V2
    caffemodel, taken by layer name; layers the prototxt lacks are ignored), or seeded random weights when
    ``net_weights`` is None. Returns the module in eval mode with ``input_contract``, ``gradient_sources`` and
    ``caffe_layer_outputs`` (see the module docstring). Bad files raise a one-line UsageError.

    mean: the per-channel mean, BGR, 0..255, recorded in ``input_contract`` (ImageNet's by default).
    """
    net = read_net_text(deploy_proto)
    weights = weights_by_layer(read_net_binary(net_weights), net_weights) if net_weights is not None else None
    return build_caffe_net(net, deploy_proto, weights, net_weights, mean=mean, labels=labels, seed=seed).eval()
