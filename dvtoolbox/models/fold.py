"""Batch norms folded into the convolutions before them: the same network with fewer memory-bound kernels.

In eval mode a ``BatchNorm2d`` is an affine map per channel, ``y = (c - mean) * s + beta`` with
``s = gamma / sqrt(var + eps)``; when its input ``c`` is a convolution's output that nothing else reads,
``conv(x; W * s, (b - mean) * s + beta)`` computes the same values in real arithmetic (exact), in one kernel
instead of two, forward and backward. In float32 the folded weights are rounded once (they are computed in
float64), so the network's numbers change by float32 rounding (measured in ``tests/models/test_fold.py`` and
doc/running-optimize-image.md).

``fold_batch_norms(model, example, keep)`` returns a copy of ``model`` with every foldable pair folded, each batch
norm replaced by an ``nn.Identity`` under the same name (so a hook on it still sees the batch norm's output), and
the names of the pairs. A pair is foldable when, in one forward pass of ``example`` (the data flow is read, not
assumed):

- the batch norm is an ``nn.BatchNorm2d`` in eval mode with running statistics, called once, whose input is the
  output tensor of an ``nn.Conv2d`` (or subclass) called once;
- the convolution's output has no other reader (counted in the autograd graph of every module output, in-place
  changes included) and the convolution is not in ``keep`` (the layers a loop captures: folding would change what
  a hook on it sees).

Nothing is folded (and the model itself is returned) when no pair qualifies. The input model is never changed.
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Dict, Iterable, List, Tuple

import torch
from torch import nn

Pair = Tuple[str, str]


def conv_bn_pairs(model: nn.Module, example: torch.Tensor, keep: Iterable[str] = ()) -> List[Pair]:
    """(convolution name, batch norm name) of every foldable pair (see the module docstring), in forward order.

    example: one input the model takes, e.g. zeros (1, 3, H, W) on the model's device."""
    keep = set(keep)
    convs = {m: n for n, m in model.named_modules() if n and isinstance(m, nn.Conv2d)}
    norms = {m: n for n, m in model.named_modules()
             if n and isinstance(m, nn.BatchNorm2d) and not m.training and m.running_mean is not None}
    calls: Counter = Counter()
    conv_outputs: Dict[int, Tuple[str, torch.Tensor, object]] = {}  # id -> (name, tensor, its node when made)
    candidates: List[Tuple[str, str, object]] = []
    outputs: List[torch.Tensor] = []

    def hook(module, inputs, output):
        name = convs.get(module) or norms.get(module)
        if name is not None:
            calls[name] += 1
        if module in convs and isinstance(output, torch.Tensor):
            conv_outputs[id(output)] = (name, output, output.grad_fn)
        if module in norms and inputs and id(inputs[0]) in conv_outputs:
            conv_name, tensor, node = conv_outputs[id(inputs[0])]
            if tensor is inputs[0] and node is not None and inputs[0].grad_fn is node:  # not changed in place
                candidates.append((conv_name, name, node))
        if isinstance(output, torch.Tensor) and output.requires_grad:
            outputs.append(output)

    handles = [m.register_forward_hook(hook) for n, m in model.named_modules() if n]
    try:
        with torch.enable_grad():
            result = model(example.detach().clone().requires_grad_(True))
    finally:
        for handle in handles:
            handle.remove()
    if isinstance(result, torch.Tensor):
        outputs.append(result)
    readers = _reader_counts(outputs)
    pairs = []
    for conv_name, norm_name, node in candidates:
        if conv_name in keep or calls[conv_name] != 1 or calls[norm_name] != 1 or readers.get(node, 0) != 1:
            continue
        pairs.append((conv_name, norm_name))
    return pairs


def _reader_counts(roots: List[torch.Tensor]) -> Dict[object, int]:
    """How many autograd nodes read each node's output, over the graph reachable from ``roots``."""
    counts: Counter = Counter()
    seen, stack = set(), [t.grad_fn for t in roots if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        for parent, _ in node.next_functions:
            if parent is not None:
                counts[parent] += 1
                stack.append(parent)
    return counts


def folded_conv_parameters(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> Tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of ``norm(conv(x))`` as one convolution, computed in float64 and rounded once to the
    convolution's dtype: W * s and (b - mean) * s + beta, with s = gamma / sqrt(var + eps) per output channel."""
    w64 = conv.weight.detach().to(torch.float64)
    mean = norm.running_mean.detach().to(torch.float64)
    scale = torch.rsqrt(norm.running_var.detach().to(torch.float64) + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight.detach().to(torch.float64)
    bias = -mean if conv.bias is None else conv.bias.detach().to(torch.float64) - mean
    bias = bias * scale
    if norm.bias is not None:
        bias = bias + norm.bias.detach().to(torch.float64)
    weight = w64 * scale.view(-1, *([1] * (w64.dim() - 1)))
    dtype = conv.weight.dtype
    return weight.to(dtype).contiguous(memory_format=_memory_format(conv.weight)), bias.to(dtype)


def _memory_format(t: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) \
        and not t.is_contiguous() else torch.contiguous_format


def fold_batch_norms(model: nn.Module, example: torch.Tensor, keep: Iterable[str] = ()) -> Tuple[nn.Module,
                                                                                                List[Pair]]:
    """(a copy of ``model`` with the foldable pairs folded, the pairs); ``model`` itself and [] when there are none.

    The copy keeps every module name and attribute (``input_contract``, ``gradient_sources``); its parameters
    do not require gradients where the model's did not."""
    pairs = conv_bn_pairs(model, example, keep)
    if not pairs:
        return model, []
    folded = copy.deepcopy(model)
    for conv_name, norm_name in pairs:
        conv, norm = folded.get_submodule(conv_name), folded.get_submodule(norm_name)
        weight, bias = folded_conv_parameters(conv, norm)
        requires_grad = conv.weight.requires_grad
        conv.weight = nn.Parameter(weight, requires_grad=requires_grad)
        conv.bias = nn.Parameter(bias, requires_grad=requires_grad)
        parent_name, _, attr = norm_name.rpartition(".")
        setattr(folded.get_submodule(parent_name) if parent_name else folded, attr, nn.Identity())
    return folded, pairs
