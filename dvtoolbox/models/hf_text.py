"""Text embeddings of a CLIP-like Hugging Face model (CLIP, SigLIP), for text directions: the image embedding of
``hf:<repo>`` (its layer ``image_embeds``, ``hf_models.py``) pushed towards a prompt's embedding in the same joint
space (``objectives.text_direction``, ``visualize.py --text``).

``text_embeddings(source, prompts, weights)`` -> (P, D) float32: the text tower of the same repository or folder,
loaded as the vision tower is (``hf_models``: the local cache, offline when ``HF_HUB_OFFLINE`` is set; weights None:
random from the config, a warning), and its tokenizer from the same place (``AutoTokenizer``, never remote code);
the prompts are tokenized as the model's processor does (padded to the longest, SigLIP to ``max_length`` as it was
trained), and the output is what the model compares images with:

    clip     ``CLIPTextModelWithProjection``: ``text_embeds``, the projection of the end-of-text token
    siglip   ``SiglipTextModel``: ``pooler_output``, the last token through its head

A state-dict file as weights names the vision tower's weights; the text tower then has none to load (a one-line
UsageError).
"""

from __future__ import annotations

import os
from typing import Sequence, Union

import torch

from dvtoolbox.errors import UsageError
from dvtoolbox.models import hf_models

# model_type -> (text model class, the output compared with images, tokenizer padding)
TEXT_FAMILIES = {
    "clip": ("CLIPTextModelWithProjection", "text_embeds", "longest"),
    "siglip": ("SiglipTextModel", "pooler_output", "max_length"),
}


def text_config(transformers, config_path: str):
    """(model_type, the text tower's config): only a full CLIP / SigLIP config has one."""
    kind, config = hf_models.family_config(transformers, config_path, TEXT_FAMILIES, lambda kind: UsageError(
        f"{config_path}: text directions need a CLIP or SigLIP model with its text tower (model_type "
        f"{', '.join(TEXT_FAMILIES)}), got model_type {kind!r}", "text"))
    return kind, hf_models.tower_config(config, kind, "text_config")


TOKENIZER_CONFIG = "tokenizer_config.json"


def load_tokenizer(transformers, source: str, name: str):
    """The repository's or folder's tokenizer (the cache, offline when asked); a one-line UsageError when absent
    (its ``tokenizer_config.json`` is looked for first: transformers would otherwise make an empty tokenizer of the
    model's kind without a word)."""
    missing = f"the tokenizer of {name} is not there (no {TOKENIZER_CONFIG})"
    if os.path.isdir(source):
        if not os.path.isfile(os.path.join(source, TOKENIZER_CONFIG)):
            raise UsageError(f"{missing}: save the tokenizer in the folder too", "text")
    else:
        try:
            hf_models._hub_file(source, TOKENIZER_CONFIG)
        except UsageError:
            raise UsageError(f"{missing} in the Hugging Face cache {hf_models.hub_cache()}; download the repository "
                             "once online (set HF_HOME to the cache's folder)", "text") from None
    try:
        return transformers.AutoTokenizer.from_pretrained(source, cache_dir=hf_models.hub_cache(),
                                                          local_files_only=hf_models.offline(),
                                                          trust_remote_code=False)
    except Exception as exc:  # offline, not cached, unreadable: transformers raises many kinds
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:160]
        raise UsageError(f"the tokenizer of {name} cannot be loaded ({reason}); download the repository once online "
                         "(set HF_HOME to the cache's folder)", "text") from None


def text_model(source: str, weights: Union[None, str, os.PathLike] = "default"):
    """(text model in eval mode, tokenizer, output field, padding) of ``source``."""
    transformers = hf_models._transformers()
    name = hf_models.PREFIX + source
    if weights not in ("default", None):
        raise UsageError(f"{name}: a weights file holds the vision tower only; text directions need the "
                         "repository's weights (default) or random ones (none)", "text", "weights")
    with hf_models._quiet_transformers(transformers):
        config_path, _ = hf_models.config_files(source, weights)
        kind, config = text_config(transformers, config_path)
        cls_name, output, padding = TEXT_FAMILIES[kind]
        cls = getattr(transformers, cls_name)
        if weights == "default":
            net = hf_models._pretrained(cls, source, config, name)
        else:
            net = cls(config)
            hf_models.log.warning("%s: random text weights (weights=None); its directions mean nothing", name)
        tokenizer = load_tokenizer(transformers, source, name)
    return net.eval(), tokenizer, output, padding


@torch.no_grad()
def text_embeddings(source: str, prompts: Sequence[str], weights: Union[None, str, os.PathLike] = "default",
                    device: Union[str, torch.device] = "cpu") -> torch.Tensor:
    """(P, D) float32 on ``device``: each prompt's embedding in the model's joint space (see the module docstring)."""
    prompts = list(prompts)
    if not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise UsageError(f"text: give one or more non-empty prompts, got {prompts!r}", "text")
    net, tokenizer, output, padding = text_model(source, weights)
    extra = {"max_length": net.config.max_position_embeddings} if padding == "max_length" else {}
    tokens = tokenizer(prompts, padding=padding, truncation=True, return_tensors="pt", **extra)
    result = net(input_ids=tokens["input_ids"],
                 **({"attention_mask": tokens["attention_mask"]} if padding == "longest" else {}))
    return result[output].float().to(device)
