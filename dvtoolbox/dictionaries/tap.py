"""A dictionary as a layer of the model: its latents become units that the whole-layer machinery runs over.

``attach_dictionary(model, name, bound, layout)`` adds a ``DictionaryTap`` module called ``name`` to the model (a
``capture.named_layers`` name of its own) and a forward hook on the bound layer that calls it with that layer's
output. The tap's output is the dictionary's pre-activations at the layer's positions, channels first: (N,
n_latents, H, W) for a grid (a convolution's, a token layer's patch tokens) or (N, n_latents) for an NC layer; it
declares that layout (``output_layout``). So ``optimize_image.py --push-layer NAME --push-channel all`` pushes every
latent as it pushes a layer's channels: batched, under torchrun, resumed, with index.html. The hook is a bound
method of the tap, so a deep copy of the model (the folded engine's) carries its own tap.
"""

from __future__ import annotations

from typing import Mapping, Optional, Tuple

import torch
from torch import nn
from torch._subclasses.fake_tensor import is_fake  # the compiled engine traces on fake tensors

from dvtoolbox.dictionaries.binding import check_dictionary_layers
from dvtoolbox.dictionaries.dictionary import Dictionary, LayerDictionary
from dvtoolbox.errors import UsageError
from dvtoolbox.models.capture import named_layers, resolve_layer
from dvtoolbox.models.layouts import NC, NCHW, Layout, canonical, survey_layers


class DictionaryTap(nn.Module):
    """The latents of ``bound.dictionary`` on ``bound.layer``'s output read through ``layout`` (see the module
    docstring). Holds no parameters; the dictionary's tensors follow the layer's device and dtype."""

    def __init__(self, bound: LayerDictionary, layout: Layout):
        super().__init__()
        self.bound, self.layout = bound, layout
        self.output_layout = NC if layout.kind == "NC" else NCHW

    def forward(self, output: torch.Tensor) -> torch.Tensor:
        t = canonical(output, self.layout, self.bound.layer)
        dictionary = self.bound.dictionary.on(t.device, t.dtype)
        return channels_first_pre_activation(dictionary, t)

    @property
    def unit_source(self) -> str:
        """The layer ``read_units`` reads (the bound layer)."""
        return self.bound.layer

    def read_units(self, source_output: torch.Tensor, channel: torch.Tensor, row: torch.Tensor,
                   col: torch.Tensor) -> torch.Tensor:
        """Image n's pre-activation of latent ``channel[n]`` at position (``row[n]``, ``col[n]``) of this tap's
        output, computed from the bound layer's output (``source_output``) with one encoder column per image:
        (N,). A pushed unit's gradient then flows through that column only, instead of through every latent's
        (N, n_latents, H, W) product with a gradient that is zero but at one element per image."""
        t = canonical(source_output, self.layout, self.bound.layer)
        t = t.reshape(*t.shape[:2], *(tuple(t.shape[2:]) + (1, 1))[:2])   # (N, d_in, H, W), a flat layer 1 x 1
        vectors = t[torch.arange(t.shape[0], device=t.device), :, row, col]
        return self.bound.dictionary.on(t.device, t.dtype).latents_at(vectors, channel)

    def read(self, module: nn.Module, inputs, output) -> None:
        """The bound layer's forward hook: run the tap (whose own hooks capture its output); the output is kept."""
        self(output)


def attach_dictionary(model: nn.Module, name: str, bound: LayerDictionary, layout: Layout) -> DictionaryTap:
    """Add the tap ``name`` to ``model`` (in place; see the module docstring); ``layout``: the bound layer's."""
    layers = named_layers(model)
    if name in layers:
        raise UsageError(f"dictionary name {name!r} is also a layer of the model; name the dictionary otherwise",
                         "dictionary")
    if layout.kind == "NTC" and layout.grid is None:
        raise UsageError(f"dictionary {name!r}: layer {bound.layer!r} is {layout}, without a grid of patches; "
                         "declare it (--layout LAYER=NTC:prefix=P:grid=HxW)", "dictionary")
    target = resolve_layer(model, bound.layer)
    tap = DictionaryTap(bound, layout)
    model.add_module(name, tap)
    target.register_forward_hook(tap.read)
    return tap


def attach_checked(model: nn.Module, dictionaries: Mapping[str, LayerDictionary], size: Tuple[int, int],
                   layouts: Mapping[str, object], setting: str) -> None:
    """Each dictionary as a layer of ``model`` named after it, checked first against its layer (its channels read
    through the layer's layout, ``layouts`` declared over the inferred ones, the model surveyed at ``size``;
    ``setting`` names the size in messages)."""
    if not dictionaries:
        return
    shapes, found = survey_layers(model, tuple(size), dict(layouts), setting=setting)
    check_dictionary_layers(dictionaries, shapes, found)
    for name, bound in dictionaries.items():
        attach_dictionary(model, name, bound, found[bound.layer])


def channels_first_pre_activation(dictionary: Dictionary, t: torch.Tensor) -> torch.Tensor:
    """``dictionary.pre_activation`` at every position of t (N, d_in, *grid), channels first: (N, n_latents,
    *grid), computed channels first (a contiguous output, no transposed copy for the loop's statistics to read) by
    ``EncoderProduct``."""
    x = dictionary.encoder_input(t.movedim(1, -1)).movedim(-1, 1)  # t itself when there is nothing to do
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    pre = EncoderProduct.apply(flat, dictionary.W_enc, dictionary.b_enc)
    if dictionary.rescale_by_decoder_norm:
        pre = pre * dictionary.W_dec.norm(dim=-1)[:, None]
    return pre.reshape(x.shape[0], pre.shape[1], *x.shape[2:])


class EncoderProduct(torch.autograd.Function):
    """W_enc^T x (+ b_enc): x (N, d_in, P), W_enc (d_in, n), b_enc (n,) or None -> (N, n, P), the bias added by
    the product itself (``baddbmm``: one pass over the output instead of two; the same numbers). Its backward to x on the CPU multiplies only the
    latents whose incoming gradient is not all zero: a pushed unit's gradient is one latent at one position per
    image, so this is B columns of the n instead of all of them, the same numbers (the columns left out add exact
    zeros). On other devices, and when traced (the compiled engine's make_fx on fake tensors, torch.compile), the dense product: choosing the columns
    reads back to the host, which breaks CUDA graphs, and gives a shape that depends on the data, which inductor
    cannot lower."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w_enc: torch.Tensor, b_enc: Optional[torch.Tensor] = None) -> torch.Tensor:
        ctx.save_for_backward(x, w_enc)
        ctx.pick_columns = x.device.type == "cpu" and not (torch.compiler.is_compiling() or is_fake(x))
        if b_enc is None:
            return torch.matmul(w_enc.t(), x)
        n, (batch, d_in, _) = w_enc.shape[1], x.shape
        return torch.baddbmm(b_enc.view(1, n, 1), w_enc.t().expand(batch, n, d_in), x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, w_enc = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            if ctx.pick_columns:
                # two reads and no |grad| copy; a NaN makes amax NaN, which counts as used
                used = ((grad.amax(dim=(0, 2)) != 0) | (grad.amin(dim=(0, 2)) != 0)).nonzero().flatten()
                grad_x = torch.matmul(w_enc[:, used], grad[:, used])
            else:
                grad_x = torch.matmul(w_enc, grad)
        if ctx.needs_input_grad[1]:
            grad_w = torch.einsum("ndp,nkp->dk", x, grad)
        if len(ctx.needs_input_grad) > 2 and ctx.needs_input_grad[2]:
            grad_b = grad.sum(dim=(0, 2))
        return grad_x, grad_w, grad_b
