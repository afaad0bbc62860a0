"""The input size of a model without an ``input_contract``, and one line when a model refuses a size.

``input_size(module, size, first_image)`` -> ((H, W), where it came from), first rule that applies:

1. ``size``, given by the user (``size=``; optimize's ``--data-size``): always wins;
2. what the module declares about itself, on the module (not on its submodules):
   - a ``default_size``, ``input_size`` or ``image_size`` attribute (torchvision's ``VisionTransformer`` has
     ``image_size``): a side, (H, W) or (C, H, W);
   - timm's fixed-size patch embedding (``patch_embed.img_size`` with ``strict_img_size``, not
     ``dynamic_img_size``): the size the model asserts, which ``img_size=`` at creation changes and
     ``pretrained_cfg`` does not;
   - timm's ``pretrained_cfg["input_size"]`` (or ``default_cfg``), (C, H, W);
3. ``first_image``: the (H, W) of the first image the job has (optimize's ``start_at`` .npy x0; visualize's
   ``size``, the images it makes);
4. 224 x 224.

``size_errors(model, size, setting)`` is the context of every probe forward pass (``layouts.survey_layers``, which
FeatureViz, the optimize job, visualize's check before any file and both ``--list-layers`` run): an
AssertionError or RuntimeError the model raises there (torchvision's "Wrong image height! Expected 32 but got 224!",
timm's "Input height (224) doesn't match model (32)", a matrix product of the wrong shape) becomes one UsageError
naming the size used, the size the model expects where it is known, and ``setting``, the name of the setting to
change (the command lines show their own flag for it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from typing import Iterator, Optional, Tuple, Union

import numpy as np
from torch import nn

from dvtoolbox.errors import UsageError

log = logging.getLogger(__name__)

DEFAULT_SIZE = 224
SIZE_ATTRIBUTES = ("default_size", "input_size", "image_size")
# what torchvision's and timm's size asserts say the model expects
EXPECTED_IN_MESSAGE = (re.compile(r"Expected (\d+) but got \d+"), re.compile(r"doesn't match model \((\d+)\)"))

SizeLike = Union[int, Tuple[int, ...]]
HW = Tuple[int, int]


def as_hw(value: object) -> Optional[HW]:
    """A side, (H, W) or (C, H, W) of positive integers as (H, W); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) not in (2, 3):
        return None
    hw = tuple(value[-2:])
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in hw):
        return None
    return int(hw[0]), int(hw[1])


def declared_size(module: nn.Module) -> Optional[Tuple[HW, str]]:
    """The (H, W) ``module`` declares (rule 2 of the module docstring) and where it says so; None when silent."""
    for name in SIZE_ATTRIBUTES:
        value = getattr(module, name, None)
        if value is not None and not callable(value):
            hw = as_hw(value)
            if hw is not None:
                return hw, f"its {name} attribute"
            log.warning("%s.%s = %r is not a side, (H, W) or (C, H, W): ignored", type(module).__name__, name, value)
    patch_embed = getattr(module, "patch_embed", None)
    if getattr(patch_embed, "strict_img_size", False) and not getattr(module, "dynamic_img_size", False):
        hw = as_hw(getattr(patch_embed, "img_size", None))
        if hw is not None:
            return hw, "its patch_embed.img_size (timm)"
    for name in ("pretrained_cfg", "default_cfg"):
        cfg = getattr(module, name, None)
        hw = as_hw(cfg.get("input_size")) if isinstance(cfg, dict) else None
        if hw is not None:
            return hw, f"its {name}['input_size'] (timm)"
    return None


def input_size(module: nn.Module, size: Optional[SizeLike] = None,
               first_image: Optional[SizeLike] = None) -> Tuple[HW, str]:
    """((H, W), where it came from) for a module without an input contract (see the module docstring)."""
    if size is not None:
        hw = as_hw(size)
        if hw is None:
            raise UsageError(f"size must be a side or (H, W) of positive integers, got {size!r}", "size")
        return hw, "the size given"
    declared = declared_size(module)
    if declared is not None:
        return declared
    if first_image is not None and as_hw(first_image) is not None:
        return as_hw(first_image), "the first image"
    return (DEFAULT_SIZE, DEFAULT_SIZE), "the default"


def npy_image_size(path: object) -> Optional[HW]:
    """(H, W) of the (C, H, W) array in a ``.npy`` file (its header only); None when it is not one (the loader
    that reads it says why)."""
    if not isinstance(path, (str, os.PathLike)) or not str(path).endswith(".npy") or not os.path.isfile(path):
        return None
    try:
        shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
    except Exception:  # an unreadable file: initial_x's one-line error, later, says why
        return None
    return as_hw(tuple(int(s) for s in shape)) if len(shape) == 3 else None


def expected_size(model: nn.Module, error: BaseException) -> Optional[HW]:
    """The input size ``model`` expects, where known: its network's declaration (a ``PixelSpaceModel``'s ``net``
    or the model itself), else what its error message says (torchvision's, timm's size asserts), else its
    ``input_contract``'s size (a model by name, a Caffe model)."""
    for module in (getattr(model, "net", None), model):
        if isinstance(module, nn.Module):
            declared = declared_size(module)
            if declared is not None:
                return declared[0]
    for pattern in EXPECTED_IN_MESSAGE:
        match = pattern.search(str(error))
        if match is not None:
            return int(match.group(1)), int(match.group(1))
    contract = getattr(model, "input_contract", None)
    return as_hw(tuple(contract.size)) if contract is not None else None


def size_error(model: nn.Module, size: HW, setting: str, error: BaseException) -> UsageError:
    """One line: the size used, the size the model expects where known, ``setting`` to change, then the model's
    error (last, so that a command line's flag replaces ``setting`` and never a word of the error)."""
    h, w = size
    reason = " ".join(f"{type(error).__name__}: {error}".split())[:200]
    expected = expected_size(model, error)
    if expected is not None and tuple(expected) != (h, w):
        advice = f"it expects {expected[0]}x{expected[1]}: set {setting} to {_as_setting(expected, setting)}"
    else:
        advice = f"set {setting} to the size it takes"
    return UsageError(f"the model cannot take {h}x{w} input: {advice} ({reason})", setting)


@contextlib.contextmanager
def size_errors(model: nn.Module, size: HW, setting: str = "size") -> Iterator[None]:
    """Inside: a probe forward pass of a (1, 3, *size) input; the model's AssertionError / RuntimeError leaves it as
    ``size_error``'s one-line UsageError."""
    try:
        yield
    except (AssertionError, RuntimeError) as exc:
        raise size_error(model, tuple(size), setting, exc) from None


def _as_setting(hw: HW, setting: str) -> str:
    """The value to give: optimize's data_size is (H,W) (``--data-size "(32,32)"``), a size a side when square."""
    return f"({hw[0]},{hw[1]})" if setting == "data_size" or hw[0] != hw[1] else str(hw[0])
