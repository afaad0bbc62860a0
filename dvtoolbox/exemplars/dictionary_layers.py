"""Dictionary latents as exemplar units: ``--dictionary NAME=LAYER=PATH`` in find_max_acts and crop_max_patches.

A dictionary becomes a layer of the model named NAME (``dictionaries.tap``: its latents' pre-activations on the
bound layer's grid, channels first), so find_max_acts tracks its latents as a layer's channels (a conv grid: max
over positions; an NC layer: the value; a token layer on its patch grid: max over patch tokens) and crop_max_patches
crops them from the bound layer's receptive field, with backprop (and deconv, where ReLUs run before the layer)
from a one-hot at the latent. The pre-activation is what is ranked: for ReLU and JumpReLU dictionaries the top
images by pre-activation are the top images by activation wherever the latent fires; for TopK they may differ
(the activation depends on the other latents).

The tracker file records each dictionary (``describe``: its layer, sizes, activation and a sha256 of its encoder),
and crop_max_patches refuses a layer that was a dictionary unless the same dictionary is given again.
"""

from __future__ import annotations

import hashlib
from typing import Dict, Mapping

import numpy as np
import torch
from torch import nn

from dvtoolbox.dictionaries.dictionary import LayerDictionary
from dvtoolbox.dictionaries.tap import attach_checked
from dvtoolbox.errors import UsageError


def attach_dictionaries(model: nn.Module, dictionaries: Mapping[str, LayerDictionary],
                        layouts: Mapping[str, object]) -> None:
    """Each dictionary as a layer of ``model`` named after it, checked against its layer first
    (``dictionaries.tap.attach_checked`` at the model's input size)."""
    attach_checked(model, dictionaries, tuple(model.input_contract.size), layouts, "size")


def encoder_digest(bound: LayerDictionary) -> str:
    """sha256 of the encoder as float32 (W_enc, then b_enc), little-endian: the same dictionary in both commands."""
    digest = hashlib.sha256()
    for t in (bound.dictionary.W_enc, bound.dictionary.b_enc):
        digest.update(np.ascontiguousarray(t.detach().to(torch.float32).cpu().numpy(), "<f4").tobytes())
    return digest.hexdigest()


def describe(dictionaries: Mapping[str, LayerDictionary]) -> Dict[str, dict]:
    """What the tracker file records of each dictionary: {name: {layer, d_in, n_latents, activation, source, sha256}}."""
    return {name: {"layer": b.layer, "d_in": b.dictionary.d_in, "n_latents": b.dictionary.n_latents,
                   "activation": b.dictionary.activation, "source": b.dictionary.source, "sha256": encoder_digest(b)}
            for name, b in dictionaries.items()}


def check_recorded(layer: str, recorded: Mapping[str, dict], dictionaries: Mapping[str, LayerDictionary],
                   nmt: str) -> None:
    """crop_max_patches of ``layer``: when the tracker file recorded it as a dictionary, the same dictionary must
    be given (bound to the same layer, the same encoder); one-line UsageError otherwise."""
    entry = recorded.get(layer)
    if entry is None:
        return
    if layer not in dictionaries:
        raise UsageError(f"{layer!r} in the tracker file {nmt} is the dictionary {entry.get('source')} on layer "
                         f"{entry.get('layer')!r}: give it again, --dictionary {layer}={entry.get('layer')}=PATH",
                         "dictionary")
    given = dictionaries[layer]
    if given.layer != entry.get("layer") or encoder_digest(given) != entry.get("sha256"):
        raise UsageError(f"dictionary {layer!r} ({given.dictionary.source} on {given.layer!r}) is not the one the "
                         f"tracker file {nmt} recorded ({entry.get('source')} on {entry.get('layer')!r}): give the "
                         "dictionary find_max_acts ran with", "dictionary")
