"""Dictionaries (sparse autoencoders and other encoders trained on a layer's activations) whose latents are units.

    from dvtoolbox.dictionaries import LayerDictionary, load_dictionary
    sae = LayerDictionary("blocks.6", load_dictionary("saes/blocks6"))      # a SAELens folder
    obj = objectives.dictionary_latent(sae.layer, sae.dictionary, 123)

Modules: ``dictionary`` (``Dictionary``, its encode rule; ``LayerDictionary``), ``formats`` (``load_dictionary``:
SAELens, Overcomplete, plain safetensors), ``binding`` (the command lines' ``NAME=LAYER=PATH[,topk=K]``).
See doc/dictionaries.md.
"""

from dvtoolbox.dictionaries.binding import parse_dictionary_binding
from dvtoolbox.dictionaries.dictionary import Dictionary, LayerDictionary
from dvtoolbox.dictionaries.formats import load_dictionary

__all__ = ["Dictionary", "LayerDictionary", "load_dictionary", "parse_dictionary_binding"]
