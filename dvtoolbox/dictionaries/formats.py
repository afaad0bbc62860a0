"""Reading dictionaries from the files people hold: SAELens, Overcomplete, and a plain safetensors file.

Tensors are read with safetensors or ``torch.load(weights_only=True)`` only; a file that needs unpickling whole (an
Overcomplete SAE saved with ``torch.save(sae, path)``) is read whole only with ``trust_model_file``.

- **SAELens** (``SAE.save_model(path)``): a folder with ``cfg.json`` and ``sae_weights.safetensors`` (the folder,
  either file, given as the path). Keys ``W_enc`` (d_in, d_sae), ``b_enc``, ``W_dec`` (d_sae, d_in), ``b_dec``,
  ``threshold`` (jumprelu; an older ``log_threshold`` is exponentiated as SAELens does). cfg fields read:
  ``architecture`` (standard: relu; topk: ``k``, ``rescale_acts_by_decoder_norm``; jumprelu; anything else is
  refused), ``d_in``, ``d_sae``, ``apply_b_dec_to_input``, ``normalize_activations`` (none,
  expected_average_only_in (no run-time normalisation in SAELens' encode either), constant_norm_rescale,
  layer_norm; covariance_whitening is refused: the file lacks the statistics), before 6.0 ``activation_fn_str``.
- **Overcomplete** (``torch.save(sae.state_dict(), path)``, ``.pt``/``.pth``, or the same keys in a
  ``.safetensors``): the default ``linear`` encoder ``encoder.final_block.0.weight`` (n, d_in) and ``.bias``, or an
  untied ``TieableEncoder``'s ``encoder.weight`` / ``encoder.bias``; ``thresholds`` (log thresholds) makes it a
  JumpSAE; a TopKSAE's k is not in its state dict: give ``topk=K``. Other encoders (MLP, attention, resnet, tied,
  batch norm) are refused. A whole pickled SAE (``torch.save(sae, path)``) is refused without
  ``trust_model_file``; with it, it is unpickled and its ``state_dict()`` and ``top_k`` read.
- **Plain safetensors**: ``W_enc`` (d_in, n) and ``b_enc`` (n,), or ``encoder.weight`` (n, d_in) and
  ``encoder.bias`` (n,) (an ``nn.Linear``'s); optional ``W_dec``, ``b_dec``, ``threshold`` (jumprelu); relu unless
  ``topk=K`` is given.

``load_dictionary(path, topk=None, trust_model_file=False)`` decides the format from what is there.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Dict, Optional

import torch

from dvtoolbox.dictionaries.dictionary import Dictionary
from dvtoolbox.errors import UsageError
from dvtoolbox.models.module_files import first_line

log = logging.getLogger(__name__)

SAELENS_CFG = "cfg.json"
SAELENS_WEIGHTS = "sae_weights.safetensors"
SAELENS_ARCHITECTURES = ("standard", "topk", "jumprelu")
SAELENS_NO_RUNTIME_NORM = ("none", "expected_average_only_in")
OC_LINEAR = ("encoder.final_block.0.weight", "encoder.final_block.0.bias")
OC_TIEABLE = ("encoder.weight", "encoder.bias")
TRUST = "if you trust the file, give trust_model_file (unpickling it whole runs any code it names)"


def load_dictionary(path: str, topk: Optional[int] = None, trust_model_file: bool = False) -> Dictionary:
    """The dictionary at ``path`` (see the module docstring); ``topk``: k of a TopK dictionary whose file does not
    say it. Every unreadable or unrecognised file is a one-line UsageError."""
    path = str(path)
    if not os.path.exists(path):
        raise UsageError(f"dictionary {path!r}: no such file or folder", "dictionary")
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    if os.path.isdir(path) or os.path.basename(path) in (SAELENS_CFG, SAELENS_WEIGHTS):
        if not os.path.isfile(os.path.join(folder, SAELENS_CFG)):
            raise UsageError(f"dictionary {path!r}: a SAELens folder holds {SAELENS_CFG} and {SAELENS_WEIGHTS}; "
                             f"{SAELENS_CFG} is missing", "dictionary")
        return load_saelens(folder, topk)
    tensors = read_tensors(path, trust_model_file)
    if all(key in tensors for key in OC_LINEAR) or ("thresholds" in tensors and OC_TIEABLE[0] in tensors):
        return overcomplete_dictionary(tensors, path, topk)
    return plain_dictionary(tensors, path, topk)


# ---------------------------------------------------------------------------------------------------- reading


def read_tensors(path: str, trust_model_file: bool = False) -> Dict[str, object]:
    """Name -> tensor from a ``.safetensors`` file or a torch file of tensors (``weights_only``); a whole pickled
    module only with ``trust_model_file`` (then its ``state_dict()``, plus ``top_k`` when it has one)."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        try:
            return load_file(path)
        except Exception as exc:  # noqa: BLE001 - a damaged or foreign file is the user's input
            raise UsageError(f"dictionary {path!r}: not a readable safetensors file ({first_line(exc)})",
                             "dictionary") from None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a pickle of objects, a damaged file
        if not trust_model_file:
            raise UsageError(f"dictionary {path!r}: refused: it is not a file of tensors ({first_line(exc)}); "
                             f"{TRUST}", "dictionary", "trust_model_file") from None
        data = _unpickle_trusted(path)
    if isinstance(data, torch.nn.Module):
        module = data
        data = dict(module.state_dict())
        if isinstance(getattr(module, "top_k", None), int):
            data["top_k"] = module.top_k
    if not isinstance(data, dict) or not data:
        raise UsageError(f"dictionary {path!r}: expected a mapping of names to tensors (a state dict), got "
                         f"{type(data).__name__}", "dictionary")
    return data


def _unpickle_trusted(path: str):
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"dictionary {path!r}: cannot read it ({type(exc).__name__}: {first_line(exc)})",
                         "dictionary") from None


def _tensor(tensors: Dict[str, object], key: str, path: str, required: bool = True) -> Optional[torch.Tensor]:
    value = tensors.get(key)
    if value is None:
        if required:
            raise UsageError(f"dictionary {path!r}: no tensor {key!r}; it has {', '.join(sorted(tensors)[:8])}",
                             "dictionary")
        return None
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise UsageError(f"dictionary {path!r}: {key!r} is not a floating-point tensor", "dictionary")
    return value.detach().to(torch.float32)


# ---------------------------------------------------------------------------------------------------- formats


def load_saelens(folder: str, topk: Optional[int] = None) -> Dictionary:
    """A SAELens folder (``cfg.json`` + ``sae_weights.safetensors``)."""
    cfg_path, weights_path = os.path.join(folder, SAELENS_CFG), os.path.join(folder, SAELENS_WEIGHTS)
    try:
        with open(cfg_path, encoding="utf-8") as handle:
            cfg = json.load(handle)
    except (OSError, ValueError) as exc:
        raise UsageError(f"dictionary {cfg_path!r}: not readable JSON ({exc})", "dictionary") from None
    if not isinstance(cfg, dict):
        raise UsageError(f"dictionary {cfg_path!r}: expected a JSON object", "dictionary")
    if not os.path.isfile(weights_path):
        raise UsageError(f"dictionary {folder!r}: {SAELENS_WEIGHTS} is missing", "dictionary")
    tensors = read_tensors(weights_path)
    source = f"{folder} (SAELens)"
    architecture = cfg.get("architecture", "standard")
    if architecture not in SAELENS_ARCHITECTURES:
        raise UsageError(f"dictionary {folder!r}: SAELens architecture {architecture!r} is not supported; "
                         f"supported: {', '.join(SAELENS_ARCHITECTURES)}", "dictionary")
    activation_fn = cfg.get("activation_fn", cfg.get("activation_fn_str", "relu"))
    if architecture == "standard" and activation_fn == "topk":  # SAELens before 6.0
        architecture = "topk"
        topk = topk or (cfg.get("activation_fn_kwargs") or {}).get("k")
    norm = cfg.get("normalize_activations", "none")
    if norm == "covariance_whitening":
        raise UsageError(f"dictionary {folder!r}: normalize_activations covariance_whitening needs the whitening "
                         "statistics, which the file does not hold; fold them into the weights first "
                         "(SAELens' fold_activation_whitening)", "dictionary")
    if norm == "expected_average_only_in":
        log.info("%s: normalize_activations expected_average_only_in: no run-time normalisation (as SAELens' "
                 "encode); fold the scaling factor into W_enc if you have it", folder)
    threshold = _tensor(tensors, "threshold", folder, required=False)
    if threshold is None and "log_threshold" in tensors:
        threshold = torch.exp(_tensor(tensors, "log_threshold", folder))
    kwargs = dict(W_enc=_tensor(tensors, "W_enc", folder), b_enc=_tensor(tensors, "b_enc", folder),
                  W_dec=_tensor(tensors, "W_dec", folder, required=False),
                  b_dec=_tensor(tensors, "b_dec", folder, required=False), source=source,
                  normalisation="none" if norm in SAELENS_NO_RUNTIME_NORM else norm)
    kwargs["subtract_b_dec"] = bool(cfg.get("apply_b_dec_to_input", True)) and kwargs["b_dec"] is not None
    _check_cfg_sizes(cfg, kwargs["W_enc"], folder)
    if architecture == "topk":
        return Dictionary(**kwargs, activation="topk", k=cfg.get("k", topk),
                          rescale_by_decoder_norm=bool(cfg.get("rescale_acts_by_decoder_norm", False)))
    if architecture == "jumprelu":
        return Dictionary(**kwargs, activation="jumprelu", threshold=threshold)
    return Dictionary(**kwargs, activation="relu")


def _check_cfg_sizes(cfg: dict, w_enc: torch.Tensor, folder: str) -> None:
    said = (cfg.get("d_in"), cfg.get("d_sae"))
    if said != (None, None) and said != tuple(w_enc.shape):
        raise UsageError(f"dictionary {folder!r}: cfg.json says d_in, d_sae = {said}, but W_enc is "
                         f"{tuple(w_enc.shape)}", "dictionary")


def overcomplete_dictionary(tensors: Dict[str, object], path: str, topk: Optional[int] = None) -> Dictionary:
    """An Overcomplete SAE's state dict (linear encoder; see the module docstring)."""
    keys = OC_LINEAR if OC_LINEAR[0] in tensors else OC_TIEABLE
    extra = sorted(k for k in tensors if k.startswith("encoder.") and k not in keys)
    if extra:
        raise UsageError(f"dictionary {path!r}: only Overcomplete's linear encoder is supported, this one also has "
                         f"{extra[0]!r}", "dictionary")
    weight, bias = _tensor(tensors, keys[0], path), _tensor(tensors, keys[1], path, required=False)
    if weight.dim() != 2:
        raise UsageError(f"dictionary {path!r}: {keys[0]!r} must be (n_latents, d_in), got {tuple(weight.shape)}",
                         "dictionary")
    source = f"{path} (Overcomplete)"
    k = tensors.get("top_k") if topk is None else topk
    kwargs = dict(W_enc=weight.T.contiguous(), b_enc=torch.zeros(weight.shape[0]) if bias is None else bias,
                  source=source)
    if "thresholds" in tensors:
        return Dictionary(**kwargs, activation="jumprelu", threshold=torch.exp(_tensor(tensors, "thresholds", path)))
    if k is not None:
        return Dictionary(**kwargs, activation="topk", k=k)
    return Dictionary(**kwargs, activation="relu")


def plain_dictionary(tensors: Dict[str, object], path: str, topk: Optional[int] = None) -> Dictionary:
    """``W_enc``/``b_enc`` or ``encoder.weight``/``encoder.bias`` (see the module docstring)."""
    if "W_enc" in tensors:
        w_enc, b_enc = _tensor(tensors, "W_enc", path), _tensor(tensors, "b_enc", path)
    elif "encoder.weight" in tensors:
        weight = _tensor(tensors, "encoder.weight", path)
        w_enc, b_enc = weight.T.contiguous() if weight.dim() == 2 else weight, _tensor(tensors, "encoder.bias", path)
    else:
        raise UsageError(f"dictionary {path!r}: no encoder found: expected W_enc and b_enc (d_in x n_latents), "
                         "encoder.weight and encoder.bias (n_latents x d_in), an Overcomplete state dict or a SAELens "
                         f"folder; it has {', '.join(sorted(tensors)[:8])}", "dictionary")
    threshold = _tensor(tensors, "threshold", path, required=False)
    activation = "topk" if topk is not None else ("jumprelu" if threshold is not None else "relu")
    return Dictionary(W_enc=w_enc, b_enc=b_enc, W_dec=_tensor(tensors, "W_dec", path, required=False),
                      b_dec=_tensor(tensors, "b_dec", path, required=False), activation=activation, k=topk,
                      threshold=threshold, source=f"{path} (safetensors)")
