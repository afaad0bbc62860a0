"""Results in the folder layout the original toolbox's GUI (caffevis, ``run_toolbox.py``) reads for its per-unit
images (the jpgvis pane), so they can be dropped into a ``caffevis_unit_jpg_dir``: the regularized-optimization
montages of optimize_image.py's results, and the max_im / max_deconv montages of crop_max_patches.py's crops.

What the GUI reads (yosinski/deep-visualization-toolbox):

- ``<caffevis_unit_jpg_dir>/regularized_opt/<layer>/<layer>_%04d_montage.jpg`` (caffevis/jpg_vis_loading_thread.py,
  image 0 of the jpgvis pane). The GUI requires it square with an even side (caffevis_helper.crop_to_corner's
  asserts), treats it as a 2x2 grid of quadrants, each a 3x3 grid of images with 1 px padding around each image and
  2 px around each quadrant, and shows only quadrant 2 (bottom left: ``crop_to_corner(img, 2)``), without its outer
  1 + 2 = 3 px: rows ``[h + 3, 2h - 3)``, columns ``[3, h - 3)`` of an image of side ``2h``.
- ``<caffevis_unit_jpg_dir>/max_im/<layer>/<layer>_%04d.jpg`` and ``.../max_deconv/<layer>/<layer>_%04d.jpg``
  (the same thread, images 1 and 2 of the pane): read whole, no crop, no size asserted; each is resized to fit a
  third of the pane and the (up to) three are stacked, vertically by default (``caffevis_jpgvis_stack_vert``); a
  missing file is skipped. The GUI reads nothing else per unit: no backprop image, no histogram.
- ``<caffevis_unit_jpg_dir>/regularized_opt/<layer>/whole_layer.jpg`` (caffevis/app.py, pattern mode): a sprite of
  ``ceil(sqrt(n)) x ceil(sqrt(n))`` equal tiles, row-major, one per unit of the layer's ``n`` units
  (caffevis_helper.load_square_sprite_image); both sides must be divisible by the tile count.

What is written here: each quadrant is laid out exactly as above with image tiles of ``tile`` pixels, so the montage
side is ``2 * (3 * tile + 10)``; the 9 positions of a quadrant hold a unit's images for up to 9 seeds (row-major, in
seed order; positions without an image stay the GUI's window background, 0.2 grey). One results folder fills
quadrant 2, the one the GUI shows; four folders fill quadrants 0, 1, 2, 3 in order (Table 1's rows 1-4 of the
paper, whose caption pairs its rows with the top-left, top-right, bottom-left and bottom-right images of its
Figure 4: so quadrant 2 is row 3, the flamingo row). ``whole_layer.jpg`` is written when the layer's unit count is
given: tile ``k`` is unit ``k``'s first-seed image of the quadrant-2 folder (background when missing).

The max_im / max_deconv montages: the scripts that made the original's were never published (the repository's
issue #58, "Code to create montages"); its downloadable ones are "nine-in-one" images of a unit's top 9. They are
written here with the rule that made each quadrant above (crop_to_corner's small padding; ImageMagick's
``montage -tile 3x3 -geometry +1+1``): ranks 0..8 of crop_max_patches.py's ``unit_%04d/maxim_%03d.png`` (resp.
``deconv_%03d.png``) row-major, rank 0 (the highest) top left, each tile with 1 px of padding around it (2 px
between tiles, 1 px at the edges), so the side is ``3 * (tile + 2)``; padding and ranks without a file are the
window background. Ranks past 9 are not shown; backprop images have no pane and are not laid out.

Images: (H, W, 3) uint8 RGB arrays throughout; files are written atomically as JPEG through dvtoolbox.io.images.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from dvtoolbox.checks import MAX_IMAGE_SIDE, check_int
from dvtoolbox.errors import UsageError
from dvtoolbox.io.gallery import UnitCell, scan_folder
from dvtoolbox.io.gallery_exemplars import ExemplarUnit, read_exemplars
from dvtoolbox.io.images import load_image_rgb, resize_center_crop, save_image

GRID = 3
SMALL_PAD = 1
LARGE_PAD = 2
GUI_CORNER = 2
BACKGROUND = 51  # the GUI's window_background (.2, .2, .2) as uint8
IMAGE_CHOICES = ("best_X", "best_Xpm", "last_X", "last_Xpm")
JPEG_MAX_SIDE = 65535  # the largest width or height a JPEG file can state
EXEMPLAR_PANES = (("max_im", "maxim"), ("max_deconv", "deconv"))
"""(GUI folder, crop_max_patches file prefix) of the jpgvis pane's images 1 and 2."""


def montage_path(gui_dir: str, layer: str, unit: int) -> str:
    """Where the GUI looks for a unit's regularized-optimization montage."""
    return os.path.join(gui_dir, "regularized_opt", layer, "%s_%04d_montage.jpg" % (layer, unit))


def whole_layer_path(gui_dir: str, layer: str) -> str:
    """Where the GUI looks for a layer's sprite of all units (pattern mode)."""
    return os.path.join(gui_dir, "regularized_opt", layer, "whole_layer.jpg")


def quadrant_side(tile: int) -> int:
    """Side of one quadrant: 3 tiles, each with SMALL_PAD around it, the whole with LARGE_PAD around it."""
    return GRID * (tile + 2 * SMALL_PAD) + 2 * LARGE_PAD


def montage_side(tile: int) -> int:
    return 2 * quadrant_side(tile)


def tile_origin(corner: int, position: int, tile: int) -> Tuple[int, int]:
    """(row, column) of the top-left pixel of image ``position`` (0..8, row-major) of quadrant ``corner``
    (0 top left, 1 top right, 2 bottom left, 3 bottom right, as crop_to_corner numbers them)."""
    half = quadrant_side(tile)
    row0, col0 = (corner // 2) * half, (corner % 2) * half
    step = tile + 2 * SMALL_PAD
    return (row0 + LARGE_PAD + SMALL_PAD + (position // GRID) * step,
            col0 + LARGE_PAD + SMALL_PAD + (position % GRID) * step)


def make_montage(quadrants: Mapping[int, Sequence[np.ndarray]], tile: int) -> np.ndarray:
    """The montage: quadrants maps a corner (0..3) to up to 9 images, each (tile, tile, 3) uint8."""
    side = montage_side(tile)
    out = np.full((side, side, 3), BACKGROUND, np.uint8)
    for corner, images in quadrants.items():
        if corner not in range(4) or len(images) > GRID * GRID:
            raise ValueError(f"corner must be 0..3 with at most {GRID * GRID} images, got {corner}, {len(images)}")
        for position, img in enumerate(images):
            if img.shape != (tile, tile, 3):
                raise ValueError(f"montage images must be ({tile}, {tile}, 3), got {img.shape}")
            row, col = tile_origin(corner, position, tile)
            out[row:row + tile, col:col + tile] = img
    return out


def exemplar_montage_path(gui_dir: str, pane: str, layer: str, unit: int) -> str:
    """Where the GUI looks for a unit's max_im or max_deconv montage (pane: "max_im" or "max_deconv")."""
    return os.path.join(gui_dir, pane, layer, "%s_%04d.jpg" % (layer, unit))


def exemplar_montage_side(tile: int) -> int:
    """Side of a max_im / max_deconv montage: 3 tiles, each with SMALL_PAD around it (a quadrant without its
    LARGE_PAD)."""
    return GRID * (tile + 2 * SMALL_PAD)


def exemplar_tile_origin(position: int, tile: int) -> Tuple[int, int]:
    """(row, column) of the top-left pixel of rank ``position`` (0..8, row-major) in a max_im / max_deconv
    montage."""
    step = tile + 2 * SMALL_PAD
    return SMALL_PAD + (position // GRID) * step, SMALL_PAD + (position % GRID) * step


def make_exemplar_montage(images: Sequence[Optional[np.ndarray]], tile: int) -> np.ndarray:
    """A max_im / max_deconv montage: images[k] is rank k's crop, (tile, tile, 3) uint8, or None (background); at
    most 9."""
    if len(images) > GRID * GRID:
        raise ValueError(f"a montage holds at most {GRID * GRID} images, got {len(images)}")
    side = exemplar_montage_side(tile)
    out = np.full((side, side, 3), BACKGROUND, np.uint8)
    for position, img in enumerate(images):
        if img is None:
            continue
        if img.shape != (tile, tile, 3):
            raise ValueError(f"montage images must be ({tile}, {tile}, 3), got {img.shape}")
        row, col = exemplar_tile_origin(position, tile)
        out[row:row + tile, col:col + tile] = img
    return out


def plan_exemplar_montages(folder: str, layer: str, units: Mapping[int, ExemplarUnit],
                           gui_dir: str) -> List[ExemplarMontage]:
    """The max_im and max_deconv montages of crop_max_patches.py's ``folder`` (read by read_exemplars): per unit
    and pane, one montage of its ranks 0..8 where at least one of them has the pane's file (maxim_%03d.png,
    deconv_%03d.png). Backprop images and any other file have no pane in the GUI and are not laid out."""
    montages = []
    for pane, prefix in EXEMPLAR_PANES:
        for unit in sorted(units):
            sources: List[Optional[str]] = [None] * GRID * GRID
            for rank in units[unit].ranks:
                if rank.rank < GRID * GRID and prefix in rank.files:
                    sources[rank.rank] = os.path.join(folder, rank.files[prefix])
            while sources and sources[-1] is None:
                sources.pop()
            if sources:
                montages.append(ExemplarMontage(exemplar_montage_path(gui_dir, pane, layer, unit), tuple(sources)))
    if not montages:
        raise UsageError(f"crops folder {folder!r} has no maxim_NNN.png or deconv_NNN.png in its unit folders: "
                         "run crop_max_patches.py with --do-maxes and/or --do-deconv", "crops")
    return montages


def _first_crop_size(crops: Sequence[ExemplarMontage]) -> int:
    """The larger side of the first planned crop (crop_max_patches' crops of a layer share one size)."""
    first = next(f for c in crops for f in c.sources if f is not None)
    h, w = load_image_rgb(first).shape[:2]
    return max(h, w)


def sprite_grid(n_units: int) -> int:
    """Tiles per side of the GUI's square sprite for n units (image_misc.get_tiles_height_width)."""
    return int(math.ceil(math.sqrt(n_units)))


def make_whole_layer(images: Mapping[int, np.ndarray], n_units: int, tile: int) -> np.ndarray:
    """The layer sprite: images maps unit -> (tile, tile, 3) uint8; missing units are background tiles."""
    grid = sprite_grid(n_units)
    out = np.full((grid * tile, grid * tile, 3), BACKGROUND, np.uint8)
    for unit, img in images.items():
        if not 0 <= unit < n_units:
            raise ValueError(f"unit {unit} is outside the layer's {n_units} units")
        row, col = divmod(unit, grid)
        out[row * tile:(row + 1) * tile, col * tile:(col + 1) * tile] = img
    return out


@dataclass
class ExemplarMontage:
    """One max_im or max_deconv file to write: ``sources[k]`` is the image of montage position k (rank k), None
    where that rank has no file."""

    path: str
    sources: Tuple[Optional[str], ...]


@dataclass
class GuiPlan:
    """Every file of a GUI layout, decided (and its inputs checked) before any is written.

    montages: (path, {corner: image paths in seed order}) of each regularized_opt montage, with images of ``tile``
    pixels; whole_layer: (path, the layer's unit count) or None; crops: the max_im / max_deconv montages, with crops
    of ``crop_tile`` pixels."""

    layer: str
    tile: int
    montages: List[Tuple[str, Dict[int, List[str]]]] = field(default_factory=list)
    whole_layer: Optional[Tuple[str, int]] = None
    crops: List[ExemplarMontage] = field(default_factory=list)
    crop_tile: int = 0

    @property
    def paths(self) -> List[str]:
        return ([p for p, _ in self.montages] + ([self.whole_layer[0]] if self.whole_layer else [])
                + [c.path for c in self.crops])

    def sources(self) -> List[str]:
        """Every image file the layout reads."""
        files = [f for _, by_corner in self.montages for paths in by_corner.values() for f in paths]
        return files + [f for c in self.crops for f in c.sources if f is not None]


def write_gui_layout(folders: Sequence[str], gui_dir: str, layer: Optional[str] = None, image: str = "best_X",
                     tile: Optional[int] = None, layer_units: Optional[int] = None,
                     brave: bool = False, crops: Optional[str] = None) -> List[str]:
    """Write the GUI layout: the regularized_opt montages of one results folder (quadrant 2) or of four (quadrants
    0..3), and the max_im / max_deconv montages of crop_max_patches.py's ``crops`` folder (OUTDIR/<layer>);
    either may be absent, not both. Returns the paths written; see ``plan_gui_layout`` for the arguments."""
    plan = plan_gui_layout(folders, gui_dir, layer=layer, image=image, tile=tile, layer_units=layer_units,
                           brave=brave, crops=crops)
    write_gui_plan(plan)
    return plan.paths


def plan_gui_layout(folders: Sequence[str], gui_dir: str, layer: Optional[str] = None, image: str = "best_X",
                    tile: Optional[int] = None, layer_units: Optional[int] = None,
                    brave: bool = False, crops: Optional[str] = None) -> GuiPlan:
    """The layout's files, with every input checked; writes nothing.

    layer: the layer to take (needed only when a folder holds several; default the crops' layer); image: which
    of a unit's images; tile: image size in the montages (default: the images' own size, the synthetic images' and
    the crops' each); layer_units: the layer's unit count, to also write whole_layer.jpg (needs results folders).
    Refuses (UsageError) to overwrite without ``brave``, to lay out an image file that cannot be read (each is
    decoded here once, and once more to be written), and crops of another layer than the results'."""
    if not folders and crops is None:
        raise UsageError("the GUI layout needs results folders (1, or 4 for Table 1's rows 1-4), crops "
                         "(crop_max_patches.py's OUTDIR/<layer>), or both", "crops")
    if folders and len(folders) not in (1, 4):
        raise UsageError(f"the GUI layout takes 1 results folder (shown by the GUI) or 4 (Table 1's rows 1-4), "
                         f"got {len(folders)}")
    if image not in IMAGE_CHOICES:
        raise UsageError(f"image must be one of {', '.join(IMAGE_CHOICES)}, got {image!r}", "image")
    if tile is not None:
        check_int("tile", tile, 1, MAX_IMAGE_SIDE)
    if layer_units is not None:
        check_int("layer_units", layer_units, 1, JPEG_MAX_SIDE ** 2)
        if not folders:
            raise UsageError("layer_units writes whole_layer.jpg from the synthetic images: give results folders "
                             "too, or leave it out", "layer_units")
    crop_layer, crop_units = (None, {}) if crops is None else read_exemplars(crops, "crops")
    if crop_layer is not None and layer is not None and layer != crop_layer:
        raise UsageError(f"layer {layer!r} is not the layer of crops {crops!r}, {crop_layer!r} (its folder's "
                         "name); give crop_max_patches.py's OUTDIR/<layer> of the same layer", "layer", "crops")
    plan = _plan_regularized(folders, gui_dir, layer or crop_layer, image, tile, layer_units, crops) \
        if folders else GuiPlan(layer=crop_layer, tile=0)
    units = [_unit_of_montage(p, plan.layer) for p, _ in plan.montages]
    if crop_units:
        plan.crops = plan_exemplar_montages(crops, crop_layer, crop_units, gui_dir)
        plan.crop_tile = _first_crop_size(plan.crops) if tile is None else tile
        units += list(crop_units)
    if layer_units is not None and max(units) >= layer_units:
        raise UsageError(f"layer_units {layer_units}: the results have unit {max(units)}; give the layer's "
                         "number of units", "layer_units")
    existing = [p for p in plan.paths if os.path.exists(p)]
    if existing and not brave:
        raise UsageError(f"cowardly refusing to overwrite {existing[0]} (and {len(existing) - 1} more); allow it with "
                         "brave", "brave")
    for f in plan.sources():  # a file that cannot be read refuses the layout before anything is written
        load_image_rgb(f)
    return plan


def write_gui_plan(plan: GuiPlan) -> None:
    """Write the planned files (each atomically); the regularized_opt montages first, whole_layer.jpg, the crops."""
    firsts: Dict[int, np.ndarray] = {}
    for path, by_corner in plan.montages:
        quadrants = {corner: [_fit(load_image_rgb(f), plan.tile) for f in files]
                     for corner, files in by_corner.items()}
        if quadrants.get(GUI_CORNER):
            firsts[_unit_of_montage(path, plan.layer)] = quadrants[GUI_CORNER][0]
        _save_uint8(path, make_montage(quadrants, plan.tile))
    if plan.whole_layer is not None:
        path, layer_units = plan.whole_layer
        _save_uint8(path, make_whole_layer(firsts, layer_units, plan.tile))
    for crop in plan.crops:
        images = [None if f is None else _fit(load_image_rgb(f), plan.crop_tile) for f in crop.sources]
        _save_uint8(crop.path, make_exemplar_montage(images, plan.crop_tile))


def _plan_regularized(folders: Sequence[str], gui_dir: str, layer: Optional[str], image: str, tile: Optional[int],
                      layer_units: Optional[int], crops: Optional[str]) -> GuiPlan:
    """The regularized_opt montages (and whole_layer.jpg) of the results folders; ``crops`` only names the
    crops' folder in the error when the folders lack its layer."""
    if crops is not None:
        for folder in folders:
            layers = sorted({c.layer for c in scan_folder(folder)})
            if layer not in layers:
                raise UsageError(f"crops folder {crops!r} is of layer {layer!r} (its folder's name) but {folder!r} "
                                 f"holds layer(s) {', '.join(layers) or 'none'}; give crop_max_patches.py's "
                                 "OUTDIR/<layer> of the results' layer", "crops")
    corners = [GUI_CORNER] if len(folders) == 1 else [0, 1, 2, 3]
    by_corner = {corner: _units_of(folder, layer, image) for corner, folder in zip(corners, folders)}
    layers = {lay for lay, _ in by_corner.values()}
    if len(layers) != 1:
        raise UsageError(f"the results folders hold different layers ({', '.join(sorted(layers))}); choose one with layer",
                         "layer")
    layer_name = layers.pop()
    units = sorted({u for _, per_unit in by_corner.values() for u in per_unit})
    tile = _first_size(by_corner) if tile is None else tile
    check_int("tile", tile, 1, MAX_IMAGE_SIDE)
    if layer_units is not None and sprite_grid(layer_units) * tile > JPEG_MAX_SIDE:
        raise UsageError(f"layer_units {layer_units} with tiles of {tile} pixels make whole_layer.jpg "
                         f"{sprite_grid(layer_units) * tile} pixels wide; a JPEG is at most {JPEG_MAX_SIDE}: give a "
                         "smaller tile", "layer_units", "tile")
    montages = [(montage_path(gui_dir, layer_name, u),
                 {corner: per_unit.get(u, [])[:GRID * GRID] for corner, (_, per_unit) in by_corner.items()})
                for u in units]
    whole = None if layer_units is None else (whole_layer_path(gui_dir, layer_name), layer_units)
    return GuiPlan(layer=layer_name, tile=tile, montages=montages, whole_layer=whole)


def _unit_of_montage(path: str, layer: str) -> int:
    """The unit of a ``<layer>_%04d_montage.jpg`` path."""
    return int(os.path.basename(path)[len(layer) + 1:-len("_montage.jpg")])


def _units_of(folder: str, layer: Optional[str], image: str) -> Tuple[str, Dict[int, List[str]]]:
    """(layer, {unit: [image paths in seed order]}) of one results folder."""
    cells: List[UnitCell] = scan_folder(folder)
    layers = sorted({c.layer for c in cells})
    if layer is None and len(layers) > 1:
        raise UsageError(f"{folder!r} holds several layers ({', '.join(layers)}); choose one with layer", "layer")
    layer = layers[0] if layer is None else layer
    per_unit: Dict[int, List[str]] = {}
    for cell in sorted((c for c in cells if c.layer == layer), key=lambda c: (c.channel, c.seed)):
        path = os.path.join(folder, cell.prefix + image + ".jpg")
        if os.path.isfile(path):
            per_unit.setdefault(cell.channel, []).append(path)
    if not per_unit:
        raise UsageError(f"no {image}.jpg of layer {layer!r} in {folder!r} (layers there: {', '.join(layers)})")
    return layer, per_unit


def _first_size(by_corner) -> int:
    for _, per_unit in by_corner.values():
        for paths in per_unit.values():
            h, w = load_image_rgb(paths[0]).shape[:2]
            return max(h, w)
    raise UsageError("no images to lay out")


def _fit(img: np.ndarray, tile: int) -> np.ndarray:
    if img.shape[:2] == (tile, tile):
        return img
    return resize_center_crop(img, tile, tile)


def _save_uint8(path: str, img: np.ndarray) -> None:
    """Write the uint8 image as it is (its folder made when missing)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_image(path, np.asarray(img, np.uint8))
