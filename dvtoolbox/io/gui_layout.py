"""Results in the folder layout the original toolbox's GUI (caffevis, ``run_toolbox.py``) reads for its
regularized-optimization unit images, so they can be dropped into a ``caffevis_unit_jpg_dir``.

What the GUI reads (yosinski/deep-visualization-toolbox):

- ``<caffevis_unit_jpg_dir>/regularized_opt/<layer>/<layer>_%04d_montage.jpg`` (caffevis/jpg_vis_loading_thread.py,
  image 0 of the jpgvis pane). The GUI requires it square with an even side (caffevis_helper.crop_to_corner's
  asserts), treats it as a 2x2 grid of quadrants, each a 3x3 grid of images with 1 px padding around each image and
  2 px around each quadrant, and shows only quadrant 2 (bottom left: ``crop_to_corner(img, 2)``), without its outer
  1 + 2 = 3 px: rows ``[h + 3, 2h - 3)``, columns ``[3, h - 3)`` of an image of side ``2h``.
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

Images: (H, W, 3) uint8 RGB arrays throughout; files are written atomically as JPEG through dvtoolbox.io.images.
"""

from __future__ import annotations

import math
import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from dvtoolbox.checks import MAX_IMAGE_SIDE, check_int
from dvtoolbox.errors import UsageError
from dvtoolbox.io.gallery import UnitCell, scan_folder
from dvtoolbox.io.images import load_image_rgb, resize_center_crop, save_image

GRID = 3
SMALL_PAD = 1
LARGE_PAD = 2
GUI_CORNER = 2
BACKGROUND = 51  # the GUI's window_background (.2, .2, .2) as uint8
IMAGE_CHOICES = ("best_X", "best_Xpm", "last_X", "last_Xpm")
JPEG_MAX_SIDE = 65535  # the largest width or height a JPEG file can state


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


def write_gui_layout(folders: Sequence[str], gui_dir: str, layer: Optional[str] = None, image: str = "best_X",
                     tile: Optional[int] = None, layer_units: Optional[int] = None,
                     brave: bool = False) -> List[str]:
    """Write the GUI layout of one results folder (quadrant 2) or of four (quadrants 0..3); returns the paths.

    layer: the layer to take (needed only when a folder holds several); image: which of a unit's images;
    tile: image size in the montage (default: the images' own size); layer_units: the layer's unit count, to also
    write whole_layer.jpg. Refuses, before writing anything, to overwrite without ``brave`` and to lay out an
    image file that cannot be read (each is decoded once before the montages are made, once to make them)."""
    if len(folders) not in (1, 4):
        raise UsageError(f"the GUI layout takes 1 results folder (shown by the GUI) or 4 (Table 1's rows 1-4), "
                         f"got {len(folders)}")
    if image not in IMAGE_CHOICES:
        raise UsageError(f"image must be one of {', '.join(IMAGE_CHOICES)}, got {image!r}", "image")
    corners = [GUI_CORNER] if len(folders) == 1 else [0, 1, 2, 3]
    by_corner = {corner: _units_of(folder, layer, image) for corner, folder in zip(corners, folders)}
    layers = {lay for lay, _ in by_corner.values()}
    if len(layers) != 1:
        raise UsageError(f"the results folders hold different layers ({', '.join(sorted(layers))}); choose one with layer",
                         "layer")
    layer_name = layers.pop()
    units = sorted({u for _, per_unit in by_corner.values() for u in per_unit})
    if layer_units is not None:
        check_int("layer_units", layer_units, 1, JPEG_MAX_SIDE ** 2)
    if layer_units is not None and units[-1] >= layer_units:
        raise UsageError(f"layer_units {layer_units}: the results have unit {units[-1]}; give the layer's "
                         "number of units", "layer_units")
    tile = _first_size(by_corner) if tile is None else tile
    check_int("tile", tile, 1, MAX_IMAGE_SIDE)
    if layer_units is not None and sprite_grid(layer_units) * tile > JPEG_MAX_SIDE:
        raise UsageError(f"layer_units {layer_units} with tiles of {tile} pixels make whole_layer.jpg "
                         f"{sprite_grid(layer_units) * tile} pixels wide; a JPEG is at most {JPEG_MAX_SIDE}: give a "
                         "smaller tile", "layer_units", "tile")
    paths = [montage_path(gui_dir, layer_name, u) for u in units]
    if layer_units is not None:
        paths.append(whole_layer_path(gui_dir, layer_name))
    existing = [p for p in paths if os.path.exists(p)]
    if existing and not brave:
        raise UsageError(f"cowardly refusing to overwrite {existing[0]} (and {len(existing) - 1} more); allow it with "
                         "brave", "brave")
    for _, per_unit in by_corner.values():  # a file that cannot be read refuses the layout before anything is written
        for files in per_unit.values():
            for f in files[:GRID * GRID]:
                load_image_rgb(f)
    os.makedirs(os.path.dirname(paths[0]), exist_ok=True)
    firsts: Dict[int, np.ndarray] = {}
    for unit, path in zip(units, paths):
        quadrants = {}
        for corner, (_, per_unit) in by_corner.items():
            quadrants[corner] = [_fit(load_image_rgb(f), tile) for f in per_unit.get(unit, [])[:GRID * GRID]]
        if quadrants.get(GUI_CORNER):
            firsts[unit] = quadrants[GUI_CORNER][0]
        _save_uint8(path, make_montage(quadrants, tile))
    if layer_units is not None:
        _save_uint8(paths[-1], make_whole_layer(firsts, layer_units, tile))
    return paths


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
    """Write the uint8 image as it is."""
    save_image(path, np.asarray(img, np.uint8))
