"""A dictionary (a sparse autoencoder's encoder) over one layer's channels, and its encode rule.

``Dictionary`` holds the encoder of a dictionary trained on a layer's activation vectors (d_in channels):
``W_enc`` (d_in, n_latents), ``b_enc`` (n_latents,), optionally ``W_dec`` (n_latents, d_in) and ``b_dec`` (d_in,),
the activation (``relu``, ``topk`` with ``k``, ``jumprelu`` with a ``threshold`` (n_latents,)) and the input
normalisation the file declares. ``encode(x)`` on (..., d_in) gives ``(pre_activation, activation)``, each
(..., n_latents), by SAELens' rule (``sae_lens.saes.*.encode``)::

    x' = normalise(x)                        # "none"; "constant_norm_rescale": x * sqrt(d_in) / |x|;
                                             # "layer_norm": (x - mean) / (std + 1e-5), std unbiased
    x' = x' - b_dec   if subtract_b_dec      # SAELens' apply_b_dec_to_input
    pre = x' @ W_enc + b_enc  (* |W_dec rows|  if rescale_by_decoder_norm, SAELens' TopK option)
    act = relu(pre)                          # relu
        = relu(pre) * (pre > threshold)      # jumprelu (Overcomplete: relu(pre) with values < threshold zeroed)
        = relu of the k largest of pre, 0 elsewhere                                             # topk

``latent(x, k, pre_activation)`` is latent k alone: for the pre-activation, relu and jumprelu it computes one
column of the encoder (what an objective on one latent needs); topk needs every latent to rank them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import torch

from dvtoolbox.errors import UsageError

ACTIVATIONS = ("relu", "topk", "jumprelu")
NORMALISATIONS = ("none", "constant_norm_rescale", "layer_norm")
LAYER_NORM_EPS = 1e-5  # SAELens' run_time_activation_ln_in


@dataclass
class Dictionary:
    """A dictionary's encoder (see the module docstring). Tensors float32 on the CPU as read; ``source`` says where
    it came from (a path and the format) for messages and info files."""

    W_enc: torch.Tensor  # noqa: N815 (the names SAELens gives them)
    b_enc: torch.Tensor
    activation: str = "relu"
    k: Optional[int] = None
    threshold: Optional[torch.Tensor] = None
    W_dec: Optional[torch.Tensor] = None  # noqa: N815
    b_dec: Optional[torch.Tensor] = None
    subtract_b_dec: bool = False
    normalisation: str = "none"
    rescale_by_decoder_norm: bool = False
    source: str = "dictionary"
    _copies: Dict[Tuple[torch.device, torch.dtype], "Dictionary"] = field(default_factory=dict, repr=False,
                                                                          compare=False)

    def __post_init__(self):
        where = self.source
        if self.W_enc.dim() != 2:
            raise UsageError(f"{where}: the encoder matrix must be (d_in, n_latents), got shape "
                             f"{tuple(self.W_enc.shape)}", "dictionary")
        d_in, n = self.W_enc.shape
        self._check_vector("b_enc", self.b_enc, n)
        if self.activation not in ACTIVATIONS:
            raise UsageError(f"{where}: activation must be one of {', '.join(ACTIVATIONS)}, got "
                             f"{self.activation!r}", "dictionary")
        if self.activation == "topk" and not (isinstance(self.k, int) and 1 <= self.k <= n):
            raise UsageError(f"{where}: topk needs k in [1, {n}], got {self.k!r}", "dictionary")
        if self.activation == "jumprelu":
            if self.threshold is None:
                raise UsageError(f"{where}: jumprelu needs a threshold vector", "dictionary")
            self._check_vector("threshold", self.threshold, n)
        if self.normalisation not in NORMALISATIONS:
            raise UsageError(f"{where}: input normalisation {self.normalisation!r} is not supported; supported: "
                             f"{', '.join(NORMALISATIONS)}", "dictionary")
        if self.W_dec is not None and tuple(self.W_dec.shape) != (n, d_in):
            raise UsageError(f"{where}: W_dec must be (n_latents, d_in) = ({n}, {d_in}), got "
                             f"{tuple(self.W_dec.shape)}", "dictionary")
        if self.b_dec is not None:
            self._check_vector("b_dec", self.b_dec, d_in)
        if self.subtract_b_dec and self.b_dec is None:
            raise UsageError(f"{where}: subtracting b_dec from the input needs b_dec", "dictionary")
        if self.rescale_by_decoder_norm and self.W_dec is None:
            raise UsageError(f"{where}: rescaling by the decoder norm needs W_dec", "dictionary")

    def _check_vector(self, name: str, t: torch.Tensor, size: int) -> None:
        if tuple(t.shape) != (size,):
            raise UsageError(f"{self.source}: {name} must have shape ({size},) to match the encoder matrix "
                             f"{tuple(self.W_enc.shape)}, got {tuple(t.shape)}", "dictionary")

    @property
    def d_in(self) -> int:
        return self.W_enc.shape[0]

    @property
    def n_latents(self) -> int:
        return self.W_enc.shape[1]

    def __str__(self) -> str:
        activation = f"topk(k={self.k})" if self.activation == "topk" else self.activation
        return f"{self.source} ({self.d_in} -> {self.n_latents} latents, {activation})"

    # -------------------------------------------------------------------------------------------- encoding

    def on(self, device: torch.device, dtype: torch.dtype) -> "Dictionary":
        """This dictionary's tensors on ``device`` in ``dtype`` (kept: one copy per device and dtype)."""
        if self.W_enc.device == device and self.W_enc.dtype == dtype:
            return self
        key = (device, dtype)
        if key not in self._copies:
            moved = {name: (None if getattr(self, name) is None else getattr(self, name).to(device, dtype))
                     for name in ("W_enc", "b_enc", "threshold", "W_dec", "b_dec")}
            self._copies[key] = Dictionary(**moved, activation=self.activation, k=self.k,
                                           subtract_b_dec=self.subtract_b_dec, normalisation=self.normalisation,
                                           rescale_by_decoder_norm=self.rescale_by_decoder_norm, source=self.source)
        return self._copies[key]

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., d_in) normalised as declared, b_dec subtracted when declared."""
        if x.shape[-1] != self.d_in:
            raise UsageError(f"dictionary {self.source} reads {self.d_in} channels, but its layer has "
                             f"{x.shape[-1]}", "dictionary")
        if self.normalisation == "constant_norm_rescale":
            x = x * (math.sqrt(self.d_in) / x.norm(dim=-1, keepdim=True))
        elif self.normalisation == "layer_norm":
            x = x - x.mean(dim=-1, keepdim=True)
            x = x / (x.std(dim=-1, keepdim=True) + LAYER_NORM_EPS)
        if self.subtract_b_dec:
            x = x - self.b_dec
        return x

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        """(..., d_in) -> (..., n_latents)."""
        pre = self.encoder_input(x) @ self.W_enc + self.b_enc
        return pre * self.W_dec.norm(dim=-1) if self.rescale_by_decoder_norm else pre

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        """The activation of pre-activations (..., n_latents)."""
        if self.activation == "relu":
            return torch.relu(pre)
        if self.activation == "jumprelu":
            return torch.relu(pre) * (pre > self.threshold).to(pre.dtype)
        top = torch.topk(pre, self.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))

    def encode(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """x (..., d_in) -> (pre_activation, activation), each (..., n_latents)."""
        pre = self.pre_activation(x)
        return pre, self.activate(pre)

    def latents_at(self, x: torch.Tensor, ks: torch.Tensor) -> torch.Tensor:
        """Row n's pre-activation of latent ``ks[n]``: x (N, d_in), ks (N,) long -> (N,). One encoder column per
        row (what pushing one latent per image needs), not the (N, n_latents) product."""
        columns = self.W_enc.t()[ks]
        pre = (self.encoder_input(x) * columns).sum(dim=-1) + self.b_enc[ks]
        return pre * self.W_dec[ks].norm(dim=-1) if self.rescale_by_decoder_norm else pre

    def latent(self, x: torch.Tensor, k: int, pre_activation: bool = True) -> torch.Tensor:
        """Latent ``k``'s pre-activation or activation on x (..., d_in): (...,). One encoder column unless the
        activation is topk (which ranks every latent)."""
        if not 0 <= k < self.n_latents:
            raise UsageError(f"latent {k} is out of range: dictionary {self.source} has {self.n_latents} latents "
                             f"(0..{self.n_latents - 1})", "dictionary")
        if self.activation == "topk" and not pre_activation:
            return self.encode(x)[1][..., k]
        pre = self.encoder_input(x) @ self.W_enc[:, k] + self.b_enc[k]
        if self.rescale_by_decoder_norm:
            pre = pre * self.W_dec[k].norm()
        if pre_activation:
            return pre
        if self.activation == "relu":
            return torch.relu(pre)
        return torch.relu(pre) * (pre > self.threshold[k]).to(pre.dtype)


@dataclass(frozen=True)
class LayerDictionary:
    """A dictionary bound to the layer whose channels it reads (a ``capture.named_layers`` name)."""

    layer: str
    dictionary: Dictionary
