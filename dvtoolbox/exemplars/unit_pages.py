"""The original's per-unit folders (crop_max_patches.py / max_tracker.output_max_patches) from one layer's top N.

For units ``idx_begin`` .. ``idx_end - 1`` of a layer, and ranks 0 .. ``num_top - 1`` (0 = the highest value):

    outdir/<layer>/unit_%04d/maxim_%03d.png          the crop of the model input (the original's data blob)
                            deconv_%03d.png           the deconv image, cropped the same way
                            deconvnorm_%03d.png       its L2 norm over the channels
                            backprop_%03d.png         the input gradient of the unit, cropped
                            backpropnorm_%03d.png     its norm
                            info.txt                  the original's header, then one row per rank:
                                                      ``is_conv val image_idx image_class [i j] filename``

(``patches.py`` says how each image is computed and scaled; ``receptive_field.py`` the crop.) The top N comes as
plain arrays, the tracker file's: values (U, N) float32 highest first, images (U, N) int64 (-1: an empty slot),
positions (U, N, 2) int64 (y, x) on the layer's grid. Empty slots (fewer images than N) get no file and no row (the
original wrote a row for image -1). Every path is planned and checked against the overwrite rule before any work:
nothing is overwritten without ``brave``. A recorded value that the model does not reproduce within 0.1 (in
float32; wider in bf16: ``model_run.value_tolerance``) is logged as a warning, as the original printed it (is the
image list the same?).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from dvtoolbox.errors import UsageError
from dvtoolbox.exemplars.model_run import autocast_for, value_tolerance
from dvtoolbox.exemplars.patches import channel_norm, crop, save_centred, save_norm, unit_input_gradient
from dvtoolbox.exemplars.receptive_field import Region, crop_box, field_function, max_crop_size
from dvtoolbox.io.atomic import write_text_atomic
from dvtoolbox.io.outputs import check_writable
from dvtoolbox.models.layouts import Layout

log = logging.getLogger(__name__)

IMAGE_FILES = {"maxes": "maxim", "deconv": "deconv", "deconv_norm": "deconvnorm", "backprop": "backprop",
               "backprop_norm": "backpropnorm"}
"""What the original's --do-* flags write, by the name of the flag, and the file name prefix."""
WHAT = tuple(IMAGE_FILES) + ("info",)
INFO_HEADER = "# is_conv val image_idx image_class i(if is_conv) j(if is_conv) filename"


@dataclass(frozen=True)
class DerivedSource:
    """Where a derived unit's images come from (``exemplars.derived``): field_layer, the model layer whose receptive
    field crops it (None: the whole image); gradient(x, unit, (y, x), deconv) -> ((3, H, W) float32, value), its
    backprop or deconv image from its seed."""

    field_layer: Optional[str]
    gradient: Callable[[torch.Tensor, int, Tuple[int, int], bool], Tuple[np.ndarray, float]]


@dataclass(frozen=True)
class TopN:
    """One layer's top N as plain arrays (see the module docstring); is_conv: units on a grid (positions used);
    derived: a derived group's source (None: ``layer`` is a model layer, units its channels)."""

    layer: str
    is_conv: bool
    values: np.ndarray
    images: np.ndarray
    positions: np.ndarray
    derived: Optional[DerivedSource] = None


def unit_dir(outdir: str, layer: str, unit: int) -> str:
    return os.path.join(outdir, layer, "unit_%04d" % unit)


def check_request(top: TopN, idx_begin: int, idx_end: int, num_top: int, what: Sequence[str]) -> None:
    """One-line UsageErrors for a request the arrays cannot meet."""
    n_units, n_top = top.values.shape
    if top.images.shape != (n_units, n_top) or top.positions.shape != (n_units, n_top, 2):
        raise ValueError(f"values {top.values.shape}, images {top.images.shape} and positions "
                         f"{top.positions.shape} must be (U, N), (U, N), (U, N, 2)")
    unknown = sorted(set(what) - set(WHAT))
    if unknown or not what:
        raise UsageError(f"nothing to do, or unknown outputs {unknown}: choose among {', '.join(WHAT)}", "do")
    if not 0 <= idx_begin < idx_end <= n_units:
        raise UsageError(f"units idx_begin {idx_begin} .. idx_end {idx_end} (exclusive) must lie in 0 .. {n_units} "
                         f"(layer {top.layer} has {n_units} units) with idx_begin < idx_end", "idx_begin", "idx_end")
    if not 1 <= num_top <= n_top:
        raise UsageError(f"num_top {num_top}: the tracker holds the top {n_top} of each unit; ask for 1 .. {n_top}",
                         "N")


def planned_paths(top: TopN, outdir: str, idx_begin: int, idx_end: int, num_top: int,
                  what: Sequence[str]) -> List[str]:
    """Every file the request writes, in the order it writes them."""
    paths = []
    for unit in range(idx_begin, idx_end):
        folder = unit_dir(outdir, top.layer, unit)
        if "info" in what:
            paths.append(os.path.join(folder, "info.txt"))
        for rank in range(num_top):
            if top.images[unit, rank] >= 0:
                paths += [os.path.join(folder, "%s_%03d.png" % (IMAGE_FILES[w], rank)) for w in IMAGE_FILES
                          if w in what]
    return paths


def info_text(top: TopN, unit: int, num_top: int, filenames: Sequence[str], labels: Sequence[int]) -> str:
    """The original's info.txt of one unit: its header, then ``is_conv val image_idx image_class [i j] filename``
    per filled rank, the value as %.6f."""
    rows = [INFO_HEADER]
    for rank in range(num_top):
        image = int(top.images[unit, rank])
        if image < 0:
            continue
        where = " %d %d" % tuple(top.positions[unit, rank]) if top.is_conv else ""
        rows.append("%d %.6f %d %d%s %s" % (int(top.is_conv), top.values[unit, rank], image, labels[image], where,
                                            filenames[image]))
    return "\n".join(rows) + "\n"


def write_unit_pages(model: nn.Module, top: TopN, filenames: Sequence[str], labels: Sequence[int],
                     load_input: Callable[[int], torch.Tensor], outdir: str, idx_begin: int, idx_end: int,
                     num_top: int, what: Sequence[str], brave: bool = False, layout: Optional[Layout] = None,
                     channel_swap_to_rgb: Optional[Sequence[int]] = None, field_method: str = "auto",
                     precision: str = "float32", value_rtol: float = 0.0) -> List[str]:
    """Write the folders of units idx_begin .. idx_end - 1 (see the module docstring); returns the paths written.

    filenames, labels: the image list (paths as the info file shows them, labels -1 where none);
    load_input(image_idx) -> (1, 3, H, W) float32, the model input of that image (model pixel space, as when the
    top N was found); what: a subset of WHAT; channel_swap_to_rgb: default the model's input contract's;
    precision: the deconv and backprop passes' (bf16: under bfloat16 autocast); value_rtol: the relative part of the
    value check's tolerance (``model_run.value_tolerance``)."""
    check_request(top, idx_begin, idx_end, num_top, what)
    paths = planned_paths(top, outdir, idx_begin, idx_end, num_top, what)
    if not brave and any(os.path.exists(p) for p in paths):
        check_writable(paths, brave)   # refuses before any work, and before it makes a folder
    if channel_swap_to_rgb is None:
        channel_swap_to_rgb = model.input_contract.channel_swap_to_rgb
    draw = [w for w in IMAGE_FILES if w in what]
    field_of, size = prepare(model, top, load_input, idx_begin, idx_end, num_top, draw, layout, field_method)
    check_writable(paths, brave)       # makes the folders, checks they are writable
    for unit in range(idx_begin, idx_end):
        folder = unit_dir(outdir, top.layer, unit)
        if "info" in what:
            write_text_atomic(os.path.join(folder, "info.txt"), info_text(top, unit, num_top, filenames, labels))
        for rank in range(num_top if draw else 0):
            image = int(top.images[unit, rank])
            if image < 0:
                continue
            x = load_input(image)
            y, xx = (int(v) for v in top.positions[unit, rank]) if top.is_conv else (0, 0)
            box = crop_box(field_of(y, xx), size)
            images = unit_images(model, x, top, unit, (y, xx), rank, draw, layout, precision, value_rtol)
            for w in draw:
                path = os.path.join(folder, "%s_%03d.png" % (IMAGE_FILES[w], rank))
                if w.endswith("_norm"):
                    save_norm(path, crop(images[w][None], box)[0])
                else:
                    save_centred(path, crop(images[w], box), channel_swap_to_rgb)
        log.info("layer %s unit %d: written", top.layer, unit)
    return paths


def prepare(model: nn.Module, top: TopN, load_input: Callable[[int], torch.Tensor], idx_begin: int, idx_end: int,
            num_top: int, draw: Sequence[str], layout: Optional[Layout], field_method: str):
    """(the layer's field rule (y, x) -> Region, its crop size), decided once from the first image to draw, and a
    deconv refused (a model without ReLUs) before anything is written; (None, None) when nothing is drawn."""
    filled = [(u, r) for u in range(idx_begin, idx_end) for r in range(num_top) if top.images[u, r] >= 0]
    if not draw or not filled:
        return None, None
    unit, rank = filled[0]
    x = load_input(int(top.images[unit, rank]))
    if "deconv" in draw or "deconv_norm" in draw:  # refused before the field's passes, the costly part
        yx = tuple(int(v) for v in top.positions[unit, rank]) if top.is_conv else (0, 0)
        _gradient(model, x, top, unit, yx, layout, deconv=True)
    if top.derived is not None and top.derived.field_layer is None:  # a per-image unit: the whole image
        whole = Region(0, x.shape[-2], 0, x.shape[-1])
        return (lambda y, xx: whole), whole.size
    field_layer = top.layer if top.derived is None else top.derived.field_layer
    geometry, field_of = field_function(model, field_layer, tuple(x.shape[-2:]), layout, field_method)
    return field_of, max_crop_size(geometry, field_of)


def _gradient(model: nn.Module, x: torch.Tensor, top: TopN, unit: int, yx: Tuple[int, int],
              layout: Optional[Layout], deconv: bool) -> Tuple[np.ndarray, float]:
    """The unit's backprop (deconv) image and value: from a one-hot at a layer's unit, or a derived unit's seed."""
    if top.derived is not None:
        return top.derived.gradient(x, unit, tuple(yx), deconv)
    return unit_input_gradient(model, x, top.layer, (unit,) + tuple(yx), layout, deconv=deconv)


def unit_images(model: nn.Module, x: torch.Tensor, top: TopN, unit: int, yx: Tuple[int, int], rank: int,
                draw: Sequence[str], layout: Optional[Layout], precision: str = "float32",
                value_rtol: float = 0.0) -> Dict[str, np.ndarray]:
    """The uncropped images of one (unit, rank): (3, H, W) for maxes / deconv / backprop, (H, W) for the norms."""
    out: Dict[str, np.ndarray] = {}
    if "maxes" in draw:
        out["maxes"] = x[0].detach().float().cpu().numpy()
    for name in ("deconv", "backprop"):
        if name in draw or name + "_norm" in draw:
            with autocast_for(precision, x.device):
                grad, value = _gradient(model, x, top, unit, yx, layout, deconv=name == "deconv")
            out[name], out[name + "_norm"] = grad, channel_norm(grad)
    if "deconv" in out or "backprop" in out:
        recorded = float(top.values[unit, rank])
        if abs(value - recorded) > value_tolerance(float(top.values[unit, 0]), value_rtol):
            log.warning("layer %s unit %d rank %d: recorded value %g, reproduced %g: is the image list the same?",
                        top.layer, unit, rank, recorded, value)
    return out
