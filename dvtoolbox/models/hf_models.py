"""Hugging Face ``transformers`` vision models by name (an optional extra: ``pip install dvtoolbox[hf]``):
``create_model("hf:facebook/dinov2-small")``, ``hf:openai/clip-vit-base-patch32`` (its vision tower),
``hf:google/siglip-base-patch16-224``, ``hf:google/vit-base-patch16-224``, or ``hf:<folder>`` (a folder written by
``save_pretrained`` with its ``preprocessor_config.json``).

What is built, by the config's ``model_type`` (``FAMILIES``), and what forward returns (the model's final output,
(N, C), the tensor objectives read as the last layer):

    vit, dinov2, dinov2_with_registers   ``...ForImageClassification`` when the config's ``architectures`` says so:
                                         the logits, with ``fc8`` / ``prob`` and the config's class names; else the
                                         base model's ``pooler_output`` (DINOv2: the class token after the final
                                         layer norm; ViT: its pooler, or the class token when it has none)
    clip, clip_vision_model              ``CLIPVisionModelWithProjection``: ``image_embeds``, the image embedding in
                                         CLIP's joint space (the projection of the pooled class token)
    siglip, siglip_vision_model          ``SiglipVisionModel``: ``pooler_output``, the attention-pooled image
                                         embedding SigLIP compares with text

A model without classes gets an identity layer ``image_embeds`` after the network, so the final output has a layer
name (``image_embeds:5``). The network is wrapped as every wrapped model is (``adapter.PixelSpaceModel``): it takes
dvtoolbox's pixel space and keeps the model's own layer names (``encoder.layer.5`` in DINOv2,
``vision_model.encoder.layers.5`` in CLIP's tower, as the installed transformers names them). A block that returns a
tuple or a ``ModelOutput`` is read as its hidden states (``capture.first_tensor``). Class and register tokens are the
token layouts' prefix (``num_prefix_tokens``: 1 + the config's ``num_register_tokens``; SigLIP has none), so token
layers are inferred as timm's ViTs are (``layouts.py``).

The input contract comes from the image processor's ``preprocessor_config.json``: ``image_mean``, ``image_std``
(RGB, 0..1 scale), the input size (``crop_size`` with ``do_center_crop``, else ``size``), the shorter side
photographs are resized to before the crop (``size: {shortest_edge}``), or a resize to ``size: {height, width}``
without a crop, and ``resample`` (PIL's filter codes). A model fed at another size than its config's
``image_size`` interpolates its position embeddings (``interpolate_pos_encoding``; DINOv2 always does).

weights:
    "default"    the repository's weights, from the local Hugging Face cache (``$HF_HUB_CACHE``, else
                 ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``), downloaded there once when online;
                 ``HF_HUB_OFFLINE=1`` never asks the network. Not there and offline: a one-line UsageError.
    None         random weights (torch's global RNG) from the config: the cache's, else the copy shipped in
                 ``dvtoolbox/data/hf_configs`` for the four models named above (so offline works), logged as a
                 warning.
    a path       a state dict for the built module (``.safetensors``, ``.bin``, ``.pth``), loaded strictly.
Nothing a configuration names is imported: ``trust_remote_code`` is never set, and an unknown ``model_type`` is a
one-line UsageError.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import inspect
import json
import logging
import math
import os
import re
from dataclasses import replace
from typing import Callable, Dict, Optional, Tuple, Union

import torch
from torch import nn

from dvtoolbox.checks import check_reals
from dvtoolbox.errors import UsageError
from dvtoolbox.models.adapter import PixelSpaceModel, pixel_space_contract
from dvtoolbox.models.labels import imagenet_labels
from dvtoolbox.models.registry import register_family
from dvtoolbox.models.weights import load_weights

log = logging.getLogger(__name__)

PREFIX = "hf:"
INSTALL = "pip install 'dvtoolbox[hf]' (or pip install transformers)"
CONFIG, PROCESSOR = "config.json", "preprocessor_config.json"
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+|[A-Za-z0-9][\w.-]*")
# PIL's resampling codes, as image processors write them
RESAMPLES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
# model_type -> (base model class, class with a classification head or None, the output forward returns)
FAMILIES = {
    "vit": ("ViTModel", "ViTForImageClassification", "pooler_output"),
    "dinov2": ("Dinov2Model", "Dinov2ForImageClassification", "pooler_output"),
    "dinov2_with_registers": ("Dinov2WithRegistersModel", "Dinov2WithRegistersForImageClassification",
                              "pooler_output"),
    "clip": ("CLIPVisionModelWithProjection", None, "image_embeds"),
    "clip_vision_model": ("CLIPVisionModelWithProjection", None, "image_embeds"),
    "siglip": ("SiglipVisionModel", None, "pooler_output"),
    "siglip_vision_model": ("SiglipVisionModel", None, "pooler_output"),
}
NO_CLASS_TOKEN = ("siglip", "siglip_vision_model")


def _transformers():
    try:
        import transformers
    except ImportError:
        raise UsageError(f"Hugging Face models need the optional package transformers: {INSTALL}", "model") from None
    return transformers


# ---------------------------------------------------------------------------------------------------- files


def hub_cache() -> str:
    """The Hugging Face hub cache as huggingface_hub finds it, read now (not when it was imported):
    ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub`` or ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                                     os.path.join("~", ".cache"), "huggingface")
    return os.path.join(os.path.expanduser(home), "hub")


def offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) set to a true value."""
    return any(os.environ.get(v, "").strip().upper() in ("1", "ON", "YES", "TRUE")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def shipped_file(repo: str, filename: str) -> Optional[str]:
    """The copy of ``filename`` shipped for ``repo`` (``dvtoolbox/data/hf_configs/<org>--<name>.<filename>``)."""
    path = importlib.resources.files("dvtoolbox") / "data" / "hf_configs" / f"{repo.replace('/', '--')}.{filename}"
    return str(path) if path.is_file() else None


def shipped_models() -> Tuple[str, ...]:
    """The repositories whose configs ship with dvtoolbox."""
    folder = importlib.resources.files("dvtoolbox") / "data" / "hf_configs"
    names = [p.name[:-len("." + CONFIG)] for p in folder.iterdir() if p.name.endswith("." + CONFIG)]
    return tuple(sorted(n.replace("--", "/") for n in names))


def _hub_file(repo: str, filename: str) -> str:
    """``filename`` of ``repo`` from the cache (or the hub, when online); a UsageError when it cannot be had."""
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(repo, filename, cache_dir=hub_cache(), local_files_only=offline())
    except Exception as exc:  # offline, not cached, no such repository or file: huggingface_hub raises many kinds
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:160]
        raise UsageError(f"cannot get {filename} of {PREFIX}{repo} from the Hugging Face cache {hub_cache()} or the "
                         f"hub ({reason}); download it once online (set HF_HOME to the cache's folder), or use "
                         f"random weights with one of {', '.join(PREFIX + m for m in shipped_models())}",
                         "model") from None


def _read_json(path: str, what: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the {what} {path!r}: {type(exc).__name__}: {exc}", "model") from None
    if not isinstance(data, dict):
        raise UsageError(f"the {what} {path!r} holds a {type(data).__name__}, not a JSON object", "model")
    return data


def config_files(source: str, weights) -> Tuple[str, str]:
    """The paths of ``config.json`` and ``preprocessor_config.json`` for ``source`` (a folder or a repository):
    the folder's; else the cache's (or the hub's); for random weights (``weights`` None) the shipped copies when
    the cache has none."""
    if os.path.isdir(source):
        paths = tuple(os.path.join(source, name) for name in (CONFIG, PROCESSOR))
        for path in paths:
            if not os.path.isfile(path):
                raise UsageError(f"the folder has no {os.path.basename(path)} (a Hugging Face model folder holds "
                                 "config.json and its image processor's preprocessor_config.json)", "model")
        return paths
    if not REPO_ID.fullmatch(source):
        raise UsageError("not a folder, nor a Hugging Face repository id (owner/name)", "model")
    shipped = (shipped_file(source, CONFIG), shipped_file(source, PROCESSOR))
    if weights is None and all(shipped):
        return shipped
    return _hub_file(source, CONFIG), _hub_file(source, PROCESSOR)


# ---------------------------------------------------------------------------------------------------- contract


def _size_of(value, square: bool, path: str) -> Dict[str, int]:
    """An image processor's ``size`` / ``crop_size``: an int (a square, or the shortest edge when ``square`` is
    False, as processors with a centre crop read it) or a dict of positive ints."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"height": value, "width": value} if square else {"shortest_edge": value}
    if not isinstance(value, dict) or not value or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value.values()):
        raise UsageError(f"{path}: size and crop_size must be a positive integer or a dict of them, got {value!r}",
                         "model")
    return value


def read_processor_config(path: str) -> dict:
    """The input contract an image processor's ``preprocessor_config.json`` declares: a dict with ``mean`` and
    ``std`` (RGB, 0..1 scale), ``size`` (H, W) of the model input, ``resize_to`` (the shorter side before a centre
    crop, or None), ``stretch`` (resize to ``size`` without a crop) and ``resample`` (a PIL filter name). A missing
    key takes the default of transformers' base image processor (mean and std 0.5, size 224, bilinear); a value
    that makes no sense is a one-line UsageError naming the file."""
    data = _read_json(path, "image processor config")
    if data.get("do_normalize", True) is False or data.get("do_rescale", True) is False:
        raise UsageError(f"{path}: a processor that does not rescale and normalise (do_rescale, do_normalize false) "
                         "is not supported", "model")
    try:
        mean = check_reals("image_mean", data.get("image_mean", (0.5, 0.5, 0.5)), 3)
        std = check_reals("image_std", data.get("image_std", (0.5, 0.5, 0.5)), 3)
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}", "model") from None
    if not all(math.isfinite(v) for v in mean + std) or not all(s > 0 for s in std):
        raise UsageError(f"{path}: image_mean must be finite and image_std > 0, got {mean} and {std}", "model")
    resample = data.get("resample", 2)
    if resample not in RESAMPLES:
        raise UsageError(f"{path}: resample must be one of PIL's codes {sorted(RESAMPLES)}, got {resample!r}", "model")
    crop = bool(data.get("do_center_crop", False)) and "crop_size" in data
    size = _size_of(data.get("size", 224), not crop, path)
    if crop:
        out = _size_of(data["crop_size"], True, path)
        hw = (out.get("height"), out.get("width"))
        resize_to, stretch = size.get("shortest_edge"), False
    else:
        hw = (size.get("height"), size.get("width"))
        resize_to, stretch = None, True
    if None in hw:
        raise UsageError(f"{path}: the model input needs a height and width (crop_size with do_center_crop, else "
                         f"size), got size {data.get('size')!r}", "model")
    return dict(mean=mean, std=std, size=tuple(hw), resize_to=resize_to, stretch=stretch,
                resample=RESAMPLES[resample])


def contract_of(processor: dict, labels=None, label_layers=()):
    """The ``InputContract`` of a processor config read by ``read_processor_config``."""
    contract = pixel_space_contract(processor["size"], processor["mean"], labels, label_layers)
    return replace(contract, resample=processor["resample"], resize_to=processor["resize_to"],
                   stretch=processor["stretch"] and processor["size"][0] == processor["size"][1])


# ---------------------------------------------------------------------------------------------------- model


class HFPixelSpaceModel(PixelSpaceModel):
    """A transformers vision model in dvtoolbox's pixel space. forward(x): x (N, 3, H, W) float32, RGB, 0..255
    minus 255 * mean -> the model's ``output`` field (N, C): logits (then ``fc8``, ``prob``) or an image embedding
    (then ``image_embeds``). ``num_prefix_tokens``: class and register tokens before the patch tokens."""

    def __init__(self, net: nn.Module, std, output: str, classifier: bool, prefix_tokens: int,
                 native_size: Tuple[int, int]):
        super().__init__(net, std, classifier)
        self.output = output
        self.num_prefix_tokens = prefix_tokens
        self.native_size = tuple(native_size)
        self.interpolates = "interpolate_pos_encoding" in inspect.signature(net.forward).parameters
        if not classifier:
            self.image_embeds = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        extra = {"interpolate_pos_encoding": True} if self.interpolates and \
            tuple(x.shape[-2:]) != self.native_size else {}
        result = self.net(self._normalize(x), **extra)
        out = result[self.output] if self.output in result else None
        if out is None:                                # a ViT without a pooler: its class token
            out = result["last_hidden_state"][:, 0]
        if self.classifier:
            out = self.fc8(out)
            self.prob(out)                             # computed so that hooks on "prob" see it
            return out
        return self.image_embeds(out)


def family_config(transformers, config_path: str, families, unsupported: Callable[[object], UsageError]):
    """(model_type, the config) of ``config_path`` when its ``model_type`` is one of ``families``; else raises
    ``unsupported(model_type)``. The config's ``auto_map`` is dropped: code a config names is never imported."""
    data = _read_json(config_path, "model config")
    kind = data.get("model_type")
    if kind not in families:
        raise unsupported(kind)
    data = {k: v for k, v in data.items() if k != "auto_map"}
    return kind, transformers.AutoConfig.for_model(**data)


def tower_config(config, kind: str, tower: str):
    """A CLIP / SigLIP config's ``tower`` ("vision_config", "text_config"), with CLIP's projection size."""
    sub = getattr(config, tower)
    if kind == "clip":
        sub.projection_dim = config.projection_dim
    return sub


def _vision_config(transformers, config_path: str):
    """The vision model's config: the file's, or the vision tower's of a CLIP / SigLIP config (with CLIP's
    projection size); an unknown ``model_type`` is a UsageError."""
    kind, config = family_config(transformers, config_path, FAMILIES, lambda kind: UsageError(
        f"{config_path}: model_type {kind!r} is not a supported vision model; supported: {', '.join(FAMILIES)}",
        "model"))
    if kind in ("clip", "siglip"):
        vision = tower_config(config, kind, "vision_config")
        vision.architectures = config.architectures
        return vision
    return config


def _model_class(transformers, config) -> Tuple[type, bool, str]:
    base, head, output = FAMILIES[config.model_type]
    classifier = head is not None and any(a.endswith("ForImageClassification") for a in config.architectures or ())
    return getattr(transformers, head if classifier else base), classifier, ("logits" if classifier else output)


@contextlib.contextmanager
def _quiet_transformers(transformers):
    """transformers' own log lines and progress bars off while loading (its load report lists the text tower's
    weights that a vision tower leaves out); missing and mismatched weights are checked here."""
    logging_ = transformers.utils.logging
    verbosity = logging_.get_verbosity()
    bars = logging_.is_progress_bar_enabled()
    logging_.set_verbosity_error()
    logging_.disable_progress_bar()
    try:
        yield
    finally:
        logging_.set_verbosity(verbosity)
        if bars:
            logging_.enable_progress_bar()


def _pretrained(cls, source: str, config, name: str) -> nn.Module:
    """``cls.from_pretrained`` from the folder or the cache (or the hub, when online): every weight of the model
    present with its shape, or a one-line UsageError."""
    try:
        net, info = cls.from_pretrained(source, config=config, cache_dir=hub_cache(), local_files_only=offline(),
                                        output_loading_info=True)
    except Exception as exc:  # offline, not cached, an unreadable file: transformers raises many kinds
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise UsageError(f"weights of {name} cannot be loaded ({reason}); download them once online (set HF_HOME "
                         "to the cache's folder), give a state-dict file, or none for random weights",
                         "weights") from None
    missing = list(info.get("missing_keys") or ()) + [str(k) for k in info.get("mismatched_keys") or ()]
    if missing:
        raise UsageError(f"weights of {name} do not fit its config: {len(missing)} missing or mismatched, "
                         f"first {missing[0]}", "weights")
    return net.float()


def _labels(config, classifier: bool):
    if not classifier:
        return None
    names = [config.id2label[i] for i in range(config.num_labels)]
    if all(n == f"LABEL_{i}" for i, n in enumerate(names)):   # a config without class names
        return imagenet_labels() if len(names) == 1000 else None
    return tuple(names)


@contextlib.contextmanager
def _naming(name: str):
    """A UsageError about the model's files begins with ``model <name>:`` (the command lines show ``--model``)."""
    try:
        yield
    except UsageError as exc:
        if exc.fields != ("model",):
            raise
        raise UsageError(f"model {name}: {exc}", "model") from None


def hf_model(source: str, weights: Union[None, str, os.PathLike] = "default") -> HFPixelSpaceModel:
    """The transformers vision model ``source`` (a repository id or a folder) in dvtoolbox's pixel space, in eval
    mode with ``input_contract`` (weights: see the module docstring)."""
    transformers = _transformers()
    name = PREFIX + source
    with _quiet_transformers(transformers), _naming(name):
        config_path, processor_path = config_files(source, weights)
        processor = read_processor_config(processor_path)
        config = _vision_config(transformers, config_path)
    cls, classifier, output = _model_class(transformers, config)
    with _quiet_transformers(transformers):
        if weights == "default":
            net = _pretrained(cls, source, config, name)
        else:
            net = cls(config)
            if weights is None:
                log.warning("%s: random weights (weights=None); its images mean nothing", name)
            else:
                load_weights(net, weights, name)
    prefix = 0 if config.model_type in NO_CLASS_TOKEN else 1 + int(getattr(config, "num_register_tokens", 0) or 0)
    native = getattr(config, "image_size", processor["size"])
    native = (native, native) if isinstance(native, int) else tuple(native)
    model = HFPixelSpaceModel(net.eval(), processor["std"], output, classifier, prefix, native)
    model.input_contract = contract_of(processor, _labels(config, classifier), ("fc8", "prob") if classifier else ())
    log.debug("%s: %s, %d prefix tokens, contract %s", name, type(net).__name__, prefix, model.input_contract)
    return model.eval()


register_family(PREFIX, hf_model, "hf:<repository or folder> (e.g. hf:facebook/dinov2-small; needs transformers)")
