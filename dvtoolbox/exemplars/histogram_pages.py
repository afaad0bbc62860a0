"""crop_max_patches.py's ``--do-histogram``: each unit's activation histogram beside its crops.

For units ``idx_begin`` .. ``idx_end - 1`` of a layer whose tracker file holds histograms (``exemplars.histogram``):

    outdir/<layer>/unit_%04d/histogram.txt   a header comment line (layer, unit, bins, count, min, max, mean), then
                                             ``lower upper count`` per row: the underflow (-inf, e_0), the B bins,
                                             the overflow (e_B, inf) (``histogram.histogram_text``)
                            histogram.png    a small bar chart (HISTOGRAM_PX) of the bins, the top N values marked
                                             as red ticks, the under / overflow counts written at the ends

Both are written atomically; the paths are planned with the unit pages' and checked against the same overwrite
rule before any work. The chart is drawn with ``matplotlib.figure.Figure`` on its own ``FigureCanvasAgg`` (pyplot is
never imported, the global backend never changed).
"""

from __future__ import annotations

import io
import logging
import math
import os
from typing import List, Sequence

import numpy as np

from dvtoolbox.exemplars.histogram import LayerHistogram, histogram_text
from dvtoolbox.exemplars.unit_pages import unit_dir
from dvtoolbox.io.atomic import write_bytes_atomic, write_text_atomic
from dvtoolbox.io.outputs import check_writable

log = logging.getLogger(__name__)

HISTOGRAM = "histogram"
"""The name of the output in a crop job's ``what`` (the flag ``--do-histogram``)."""
FILES = ("histogram.txt", "histogram.png")
HISTOGRAM_PX = (320, 200)
DPI = 100
BAR_COLOR = "#4c72b0"
TOP_COLOR = "#d62728"


def planned_histogram_paths(layer: str, outdir: str, idx_begin: int, idx_end: int) -> List[str]:
    """Every file ``write_histograms`` writes, in its order."""
    return [os.path.join(unit_dir(outdir, layer, unit), name) for unit in range(idx_begin, idx_end) for name in FILES]


def histogram_png(h: LayerHistogram, unit: int, layer: str, top_values: Sequence[float],
                  size_px=HISTOGRAM_PX) -> bytes:
    """PNG bytes (exactly ``size_px`` (width, height)) of one unit's histogram: the B bins as bars, the top values
    as red ticks along the top (those beyond the axis at its end), the under / overflow counts as text."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    edges = h.edges[unit].astype(np.float64)
    counts = h.counts[unit]
    width, height = size_px
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.bar(edges[:-1], counts[1:-1], width=np.diff(edges), align="edge", color=BAR_COLOR, linewidth=0)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(0, max(1, int(counts[1:-1].max())) * 1.12)
    for value in top_values:
        ax.axvline(min(max(value, edges[0]), edges[-1]), ymin=0.9, ymax=1.0, color=TOP_COLOR, linewidth=2)
    for where, count, align in ((0.01, counts[0], "left"), (0.99, counts[-1], "right")):
        if count:
            ax.text(where, 0.72, f"{'<' if align == 'left' else '>'} {int(count)}", transform=ax.transAxes,
                    ha=align, fontsize=7, color="0.3")
    mean = float(h.mean()[unit])
    ax.set_title(f"{layer} unit {unit}: {int(h.count[unit])} images, mean "
                 f"{mean:.3g}" if math.isfinite(mean) else f"{layer} unit {unit}: no image", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.subplots_adjust(left=0.14, right=0.97, top=0.88, bottom=0.14)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def write_histograms(h: LayerHistogram, layer: str, top_values: np.ndarray, outdir: str, idx_begin: int,
                     idx_end: int, num_top: int, brave: bool = False) -> List[str]:
    """Write ``histogram.txt`` and ``histogram.png`` of units idx_begin .. idx_end - 1; returns the paths written.
    top_values: (U, N) the layer's top N (-inf where empty), ranks 0 .. num_top - 1 marked."""
    paths = planned_histogram_paths(layer, outdir, idx_begin, idx_end)
    check_writable(paths, brave)  # refuses an existing file without brave; makes the folders
    for unit in range(idx_begin, idx_end):
        folder = unit_dir(outdir, layer, unit)
        tops = [float(v) for v in top_values[unit, :num_top] if np.isfinite(v)]
        write_text_atomic(os.path.join(folder, FILES[0]), histogram_text(h, unit, layer))
        write_bytes_atomic(os.path.join(folder, FILES[1]), histogram_png(h, unit, layer, tops))
    log.info("layer %s units %d..%d: histograms written", layer, idx_begin, idx_end - 1)
    return paths
