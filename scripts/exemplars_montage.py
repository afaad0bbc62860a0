#!/usr/bin/env python3
"""A contact sheet of crop_max_patches.py's folders: one row per unit, its maxim crops then its backprop images.

    scripts/exemplars_montage.py OUTDIR/LAYER UNITS N out.png      e.g. out/_blocks.5 0,1,2,3 4 doc/x.png
"""

import os
import sys

from PIL import Image, ImageDraw

GAP = 4


def main(layer_dir: str, units: str, n: int, out: str) -> None:
    rows = [int(u) for u in units.split(",")]
    tile = Image.open(os.path.join(layer_dir, "unit_%04d" % rows[0], "maxim_000.png")).size[0]
    label = 70
    width = label + 2 * n * (tile + GAP) + GAP
    height = len(rows) * (tile + GAP) + GAP + 16
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((label, 2), "maxim_000 .. %03d (top %d crops)" % (n - 1, n), fill="black")
    draw.text((label + n * (tile + GAP) + GAP, 2), "backprop_000 .. %03d" % (n - 1), fill="black")
    for r, unit in enumerate(rows):
        y = 16 + GAP + r * (tile + GAP)
        draw.text((4, y + tile // 2 - 6), "unit %d" % unit, fill="black")
        for k, kind in enumerate(("maxim", "backprop")):
            for rank in range(n):
                path = os.path.join(layer_dir, "unit_%04d" % unit, "%s_%03d.png" % (kind, rank))
                x = label + (k * n + rank) * (tile + GAP) + k * GAP
                sheet.paste(Image.open(path).convert("RGB"), (x, y))
    sheet.save(out, optimize=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
