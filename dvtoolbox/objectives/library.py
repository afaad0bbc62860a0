"""The named objectives (lucid / lucent's, and the penalties): factories that return an ``Objective``.

Each returns an ``Objective`` (``objective.py``): called on ``acts`` (layer name -> output, plus ``"input"``), it
gives a 0-dim tensor to MAXIMISE. Every objective averages over the batch elements it reads (``channel_interpolate``, ``alignment``
and ``diversity`` couple elements and sum, as lucid does); ``batch=`` restricts an objective to one element (an
int) or a sub-batch (a sequence of ints), so ``channel("a", 1, batch=0) - channel("a", 1, batch=1)`` raises the
channel in image 0 and lowers it in image 1.

Penalties (``L1``, ``L2``, ``total_variation``, ``blur_input_each_step``, ``alignment``, ``diversity``) return
non-negative magnitudes: SUBTRACT them, ``channel("a", 3) - 0.05 * total_variation()``. (lucid's ``alignment``
returned the negated distance; here every penalty has the same sign.)

Layer names are ``capture.named_layers`` names (dotted paths such as ``_blocks.10``); ``"input"`` is reserved.
Channels are read where the layer's layout has them (``Activations.channels_first``): a transformer's channel is
the feature averaged over its patch tokens, an (N, H, W, C) layer's channel its last dimension.
Spatial positions: ``x`` is the column, ``y`` the row; the default is the centre (W // 2, H // 2), the lower right
of the central 2 x 2 when a size is even.
"""

from __future__ import annotations

import numbers
from typing import Mapping, Optional, Tuple, Union

import torch
import torch.nn.functional as F

from dvtoolbox.errors import UsageError
from dvtoolbox.models.layouts import Layout
from dvtoolbox.objectives.objective import INPUT, Batch, wrap_objective


# ---------------------------------------------------------------------------------------------------- helpers


def _get(acts: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
    if name not in acts:
        raise UsageError(f"objective reads layer {name!r}, which was not captured; captured: {', '.join(acts)}")
    return acts[name]


def _select(t: torch.Tensor, batch: Batch) -> torch.Tensor:
    """t restricted to batch element ``batch`` (kept as a batch of 1) or to the elements listed."""
    if batch is None:
        return t
    n = t.shape[0]
    indices = [batch] if isinstance(batch, numbers.Integral) else list(batch)
    bad = [b for b in indices if not isinstance(b, numbers.Integral) or not 0 <= b < n]
    if bad or not indices:
        raise UsageError(f"batch must be an index or a list of indices in [0, {n}), got {batch!r}")
    if isinstance(batch, numbers.Integral):
        return t[batch:batch + 1]
    return t[torch.tensor(indices, device=t.device)]


def layer_output(acts, name: str, batch: Batch = None, include_prefix: bool = False) -> torch.Tensor:
    """The captured output of ``name`` in ``acts``, restricted to ``batch``, with its channels first (the layer's
    layout: (N, C, H, W), (N, C), or a token layer's patch tokens on their grid; ``include_prefix``: all its tokens,
    (N, C, T)): what every objective here reads."""
    t = _select(_get(acts, name), batch)
    channels_first = getattr(acts, "channels_first", None)
    return t if channels_first is None else channels_first(name, t, include_prefix)


def raw_tokens(acts, name: str, batch: Batch = None) -> Tuple[torch.Tensor, Layout]:
    """A token layer's output as it is, (N, T, C), and its layout; a UsageError for any other layer."""
    t = _select(_get(acts, name), batch)
    layout = acts.layout(name, t) if hasattr(acts, "layout") else None
    if layout is None or layout.kind != "NTC":
        raise UsageError(f"a token index needs a token layer (N, T, C); layer {name!r} is "
                         f"{layout if layout is not None else 'not declared'}, shape {tuple(t.shape[1:])}", "layer")
    return t, layout


def _channel(t: torch.Tensor, n: int, name: str) -> torch.Tensor:
    """t[:, n] of an (N, C, ...) output, with a UsageError naming the layer's channel count."""
    if t.dim() < 2 or not 0 <= n < t.shape[1]:
        raise UsageError(f"channel {n} out of range for layer {name!r} with output shape {tuple(t.shape[1:])}")
    return t[:, n]


def _position(t: torch.Tensor, x: Optional[int], y: Optional[int], name: str) -> torch.Tensor:
    """(N, C, H, W) -> (N, C) at row y, column x (centre by default); (N, C) unchanged if x and y are None."""
    if t.dim() == 2 and x is None and y is None:
        return t
    if t.dim() != 4:
        raise UsageError(f"a position (y, x) needs a layer with (C, H, W) outputs; {name!r} gives "
                         f"{tuple(t.shape[1:])}")
    h, w = t.shape[2:]
    yy, xx = h // 2 if y is None else y, w // 2 if x is None else x
    if not (0 <= yy < h and 0 <= xx < w):
        raise UsageError(f"position (y={yy}, x={xx}) outside layer {name!r} of size {h}x{w}")
    return t[:, :, yy, xx]


def _vector(vec, t: torch.Tensor, name: str) -> torch.Tensor:
    """vec (C,) as a tensor shaped to broadcast over t's channel axis."""
    v = torch.as_tensor(vec, dtype=t.dtype, device=t.device).reshape(-1)
    if v.numel() != t.shape[1]:
        raise UsageError(f"direction has {v.numel()} values but layer {name!r} has {t.shape[1]} channels")
    return v.reshape((1, -1) + (1,) * (t.dim() - 2))


def _dot_cossim(t: torch.Tensor, v: torch.Tensor, cossim_pow: float) -> torch.Tensor:
    """mean over batch and positions of ``dot(t, v)`` over channels, times ``max(0.1, cos)**cossim_pow`` when
    cossim_pow != 0 (lucid's _dot_cossim, eps 1e-4 on both norms)."""
    dot = (t * v).sum(dim=1)
    if cossim_pow == 0:
        return dot.mean()
    eps = 1e-4
    cos = dot / ((eps + t.norm(dim=1)) * (eps + v.norm()))
    return (dot * cos.clamp(min=0.1) ** cossim_pow).mean()


def blur3(x: torch.Tensor) -> torch.Tensor:
    """lucid's 3 x 3 blur of each channel of (N, C, H, W): weights 1 in the centre and 0.5 around, zero padding,
    divided by the same sum over ones (so edges are weighted averages of the pixels that exist)."""
    c = x.shape[1]
    kernel = torch.full((3, 3), 0.5, dtype=x.dtype, device=x.device)
    kernel[1, 1] = 1.0
    weight = kernel.expand(c, 1, 3, 3)
    conv = lambda t: F.conv2d(t, weight, padding=1, groups=c)  # noqa: E731
    return conv(x) / conv(torch.ones_like(x))


# ---------------------------------------------------------------------------------------------------- objectives


@wrap_objective()
def neuron(layer: str, n_channel: int, x: Optional[int] = None, y: Optional[int] = None, batch: Batch = None,
           token: Optional[int] = None):
    """Activation of channel ``n_channel`` at row ``y``, column ``x`` (centre by default) of ``layer``, averaged
    over the batch. A 2-D layer (N, C) needs no position. On a token layer (y, x) is a place on the patch grid, and
    ``token`` picks one token by its index among all tokens instead (0: the class token of a ViT)."""

    def inner(acts):
        if token is not None:
            t, _ = raw_tokens(acts, layer, batch)
            if not 0 <= token < t.shape[1]:
                raise UsageError(f"token {token} out of range for layer {layer!r} with {t.shape[1]} tokens", "token")
            _channel(t[:, token], n_channel, layer)
            return t[:, token, n_channel].mean()
        t = layer_output(acts, layer, batch)
        _channel(t, n_channel, layer)
        return _position(t, x, y, layer)[:, n_channel].mean()

    return inner


@wrap_objective()
def channel(layer: str, n_channel: int, batch: Batch = None, include_prefix: bool = False):
    """Mean activation of channel ``n_channel`` of ``layer`` over batch and positions (a token layer's patch tokens;
    ``include_prefix``: its class / register tokens too)."""
    return lambda acts: _channel(layer_output(acts, layer, batch, include_prefix), n_channel, layer).mean()


@wrap_objective()
def dictionary_latent(layer: str, dictionary, latent: int, pre_activation: bool = True, batch: Batch = None,
                      include_prefix: bool = False):
    """Mean over batch and positions (a token layer's patch tokens; ``include_prefix``: its class / register tokens
    too) of latent ``latent`` of ``dictionary`` (a ``dvtoolbox.dictionaries.Dictionary`` over ``layer``'s channels),
    read at each position from the activation vector there: its pre-activation (the default: it has a gradient
    everywhere, where a TopK or JumpReLU activation is 0, without gradient, for most images) or, with
    ``pre_activation=False``, its activation."""
    if not 0 <= latent < dictionary.n_latents:
        raise UsageError(f"latent {latent} is out of range: dictionary {dictionary.source} has "
                         f"{dictionary.n_latents} latents (0..{dictionary.n_latents - 1})", "dictionary")

    def inner(acts):
        t = layer_output(acts, layer, batch, include_prefix)
        vectors = t.movedim(1, -1)  # (N, [H, W | T,] C)
        return dictionary.on(t.device, t.dtype).latent(vectors, latent, pre_activation).mean()

    return inner


@wrap_objective()
def layer(layer: str, batch: Batch = None):  # noqa: F811 (the argument shadows the function inside it)
    """DeepDream: the mean of the squared activations of ``layer`` (every channel, position and element)."""
    name = layer
    return lambda acts: layer_output(acts, name, batch).pow(2).mean()


deepdream = layer


@wrap_objective()
def direction(layer: str, vec, batch: Batch = None, cossim_pow: float = 0):
    """Mean over batch and positions of the dot product of the activation vector (over channels) with ``vec``
    (C,), times ``max(0.1, cosine)**cossim_pow`` (lucid's ``direction``)."""

    def inner(acts):
        t = layer_output(acts, layer, batch)
        return _dot_cossim(t, _vector(vec, t, layer), cossim_pow)

    return inner


@wrap_objective()
def text_direction(layer: str, embedding, batch: Batch = None):
    """Mean over batch (and positions) of the cosine similarity of the activation vector (over channels) with
    ``embedding`` (C,): a CLIP-like model's image embedding (its ``image_embeds`` layer) pushed towards a text
    prompt's embedding (``models.hf_text.text_embeddings``), as CLIP compares them."""

    def inner(acts):
        t = layer_output(acts, layer, batch)
        v = _vector(embedding, t, layer)
        return torch.nn.functional.cosine_similarity(t, v.expand_as(t), dim=1, eps=1e-8).mean()

    return inner


@wrap_objective()
def direction_neuron(layer: str, vec, x: Optional[int] = None, y: Optional[int] = None, batch: Batch = None,
                     cossim_pow: float = 0):
    """``direction`` at one position (row ``y``, column ``x``; centre by default)."""

    def inner(acts):
        t = _position(layer_output(acts, layer, batch), x, y, layer)
        return _dot_cossim(t, _vector(vec, t, layer), cossim_pow)

    return inner


@wrap_objective(layer_args=("layer1", "layer2"))
def channel_interpolate(layer1: str, n_channel1: int, layer2: str, n_channel2: int, batch: Batch = None):
    """Element n of N (N >= 2) maximises ``(1 - w) * mean(layer1[n, n_channel1]) + w * mean(layer2[n,
    n_channel2])`` with w = n / (N - 1): pure channel 1 first, pure channel 2 last; summed over elements."""

    def inner(acts):
        a = _channel(layer_output(acts, layer1, batch), n_channel1, layer1)
        b = _channel(layer_output(acts, layer2, batch), n_channel2, layer2)
        n = a.shape[0]
        if n < 2:
            raise UsageError(f"channel_interpolate needs a batch of at least 2 images, got {n}")
        w = torch.arange(n, dtype=a.dtype, device=a.device) / (n - 1)
        return ((1 - w) * a.reshape(n, -1).mean(1) + w * b.reshape(n, -1).mean(1)).sum()

    return inner


@wrap_objective()
def alignment(layer: str, decay_ratio: float = 2, batch: Batch = None):
    """Penalty: ``sum over d = 1..4 and i of mean((t[i] - t[i + d])**2) / decay_ratio**d`` on ``layer``'s outputs
    (neighbouring images should look alike there). Non-negative: subtract it."""

    def inner(acts):
        t = layer_output(acts, layer, batch)
        total = t.new_zeros(())
        for d in (1, 2, 3, 4):
            for i in range(t.shape[0] - d):
                total = total + (t[i] - t[i + d]).pow(2).mean() / float(decay_ratio) ** d
        return total

    return inner


@wrap_objective()
def diversity(layer: str, batch: Batch = None):
    """Penalty: the summed pairwise similarity of the images' Gram matrices at ``layer`` (N, C, H, W), each Gram
    (C x C over positions) L2-normalised (lucid's, eps 1e-10 on the squared norm), divided by N. Subtract it."""

    def inner(acts):
        t = layer_output(acts, layer, batch)
        if t.dim() != 4:
            raise UsageError(f"diversity needs a layer with (C, H, W) outputs; {layer!r} gives {tuple(t.shape[1:])}")
        n, c = t.shape[:2]
        flat = t.reshape(n, c, -1)
        grams = torch.bmm(flat, flat.transpose(1, 2)).reshape(n, -1)
        grams = grams * torch.rsqrt(grams.pow(2).sum(1, keepdim=True).clamp(min=1e-10))
        similarity = grams @ grams.T
        return (similarity.sum() - similarity.diagonal().sum()) / n

    return inner


@wrap_objective()
def class_logit(layer: str, label: Union[int, str], batch: Batch = None):
    """Mean over the batch of class ``label``'s value in ``layer`` (logits); ``label`` an index or a class name of
    the model (``acts.labels``, from its input contract)."""

    def inner(acts):
        index = label
        if isinstance(label, str):
            labels = getattr(acts, "labels", None)
            if not labels:
                raise UsageError(f"class_logit({label!r}): the model declares no class names; give an index")
            if label not in labels:
                raise UsageError(f"unknown class name {label!r}; the model has {len(labels)} classes, e.g. "
                                 f"{', '.join(repr(s) for s in labels[:5])}")
            index = labels.index(label)
        return _channel(layer_output(acts, layer, batch), index, layer).mean()

    return inner


@wrap_objective()
def L1(layer: str = INPUT, constant: float = 0, batch: Batch = None):  # noqa: N802 (lucid's name)
    """Penalty: ``sum |t - constant|`` over ``layer`` (default the image)."""
    return lambda acts: (layer_output(acts, layer, batch) - constant).abs().sum()


@wrap_objective()
def L2(layer: str = INPUT, constant: float = 0, epsilon: float = 1e-6, batch: Batch = None):  # noqa: N802
    """Penalty: ``sqrt(epsilon + sum (t - constant)**2)`` over ``layer`` (default the image)."""
    return lambda acts: torch.sqrt(epsilon + (layer_output(acts, layer, batch) - constant).pow(2).sum())


@wrap_objective()
def total_variation(layer: str = INPUT, batch: Batch = None):
    """Penalty: the sum of absolute differences between vertically and horizontally adjacent values of the
    (N, C, H, W) ``layer`` (default the image), over every element and channel (TensorFlow's total_variation,
    summed over the batch)."""

    def inner(acts):
        t = layer_output(acts, layer, batch)
        return (t[..., 1:, :] - t[..., :-1, :]).abs().sum() + (t[..., :, 1:] - t[..., :, :-1]).abs().sum()

    return inner


@wrap_objective(layer_args=(), reads=(INPUT,))
def blur_input_each_step(batch: Batch = None):
    """Penalty: ``0.5 * sum (x - stop_gradient(blur3(x)))**2`` over the image x. One gradient-ascent step of size k
    on ``-blur_input_each_step()`` moves x to ``(1 - k) x + k blur3(x)`` (Nguyen et al. 2015, via lucid)."""

    def inner(acts):
        x = layer_output(acts, INPUT, batch)
        return 0.5 * (x - blur3(x).detach()).pow(2).sum()

    return inner
