"""The command lines' ``--dictionary NAME=LAYER=PATH[,topk=K]``: a named dictionary bound to a layer.

``NAME`` (letters, digits, ``_``; not starting with a digit) is how objectives refer to it (``NAME#k``, see
``objectives.expression``); ``LAYER`` the layer whose channels it reads (a ``--list-layers`` name); ``PATH`` a SAELens
folder, an Overcomplete state dict or a plain safetensors file (``formats``); ``topk=K``: k of a TopK dictionary
whose file does not say it (Overcomplete's, a plain file's).
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, Mapping, Tuple

from dvtoolbox.dictionaries.dictionary import LayerDictionary
from dvtoolbox.dictionaries.formats import load_dictionary
from dvtoolbox.errors import UsageError
from dvtoolbox.models.layouts import UNKNOWN, Layout, canonical_shape

NAME = r"[A-Za-z_]\w*"
FORM = "NAME=LAYER=PATH[,topk=K], e.g. sae=blocks.3=saes/blocks3"


def parse_dictionary_binding(text: str, trust_model_file: bool = False) -> Tuple[str, LayerDictionary]:
    """``(name, LayerDictionary)`` from ``NAME=LAYER=PATH[,topk=K]``; the file is read now."""
    match = re.fullmatch(rf"\s*({NAME})=([^=\s]+)=(.+?)(?:,topk=([0-9]{{1,9}}))?\s*", str(text))
    if match is None:
        raise UsageError(f"dictionary {text!r}: write {FORM} (NAME: letters, digits and _)", "dictionary")
    name, layer, path, topk = match.groups()
    dictionary = load_dictionary(path, None if topk is None else int(topk), trust_model_file)
    return name, LayerDictionary(layer, dictionary)


def parse_dictionary_bindings(texts: Iterable[str], trust_model_file: bool = False) -> Dict[str, LayerDictionary]:
    """Every ``--dictionary`` given, each name once."""
    bound: Dict[str, LayerDictionary] = {}
    for text in texts or ():
        name, entry = parse_dictionary_binding(text, trust_model_file)
        if name in bound:
            raise UsageError(f"dictionary name {name!r} is given twice; give each name once", "dictionary")
        bound[name] = entry
    return bound


def check_dictionary_layers(dictionaries: Mapping[str, LayerDictionary], shapes: Mapping[str, Tuple[int, ...]],
                            layouts: Mapping[str, Layout]) -> None:
    """Before any work: each dictionary's layer exists (``shapes``: a model survey's output shapes without the
    batch) and has as many channels, read through its layout, as the dictionary's d_in; one line otherwise."""
    for name, bound in sorted(dictionaries.items()):
        if bound.layer not in shapes:
            raise UsageError(f"dictionary {name!r}: {bound.layer!r} is not a layer of the model with a tensor output "
                             "(see --list-layers)", "dictionary")
        layout = layouts.get(bound.layer, Layout(UNKNOWN))
        channels = canonical_shape(shapes[bound.layer], layout, bound.layer)[0]
        if channels != bound.dictionary.d_in:
            raise UsageError(f"dictionary {name!r} ({bound.dictionary}) reads {bound.dictionary.d_in} channels, but "
                             f"layer {bound.layer!r} has {channels} ({layout}, output {shapes[bound.layer]})",
                             "dictionary")
