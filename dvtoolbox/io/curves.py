"""The obj / norm curve of one optimization as a small PNG (``<prefix>curve.png``), written atomically.

Two stacked panels over the iteration number: the pushed unit's objective (top, matplotlib colour C0) and the norm
of x (bottom, C1); a dashed vertical line marks the best iteration, a dotted one the first iteration at which the unit
was the most extreme of its layer (majority). Drawn with ``matplotlib.figure.Figure`` on a ``FigureCanvasAgg``
made for it: pyplot is never imported and the global backend is never changed, so the curve can be drawn from any
thread or process, headless or not.
"""

from __future__ import annotations

import io
import math
from typing import Optional, Sequence, Tuple

from dvtoolbox.io.atomic import write_bytes_atomic

CURVE_SIZE_PX = (400, 300)
CURVE_DPI = 100
OBJ_COLOR = "#1f77b4"
NORM_COLOR = "#ff7f0e"


def curve_png(ii: Sequence[int], obj: Sequence[float], norm: Sequence[float], best_ii: Optional[int] = None,
              majority_ii: Optional[int] = None, title: str = "",
              size_px: Tuple[int, int] = CURVE_SIZE_PX) -> bytes:
    """PNG bytes of the obj / norm curve: an RGBA image of exactly ``size_px`` (width, height) pixels.

    ii: iteration numbers; obj, norm: one value per iteration (non-finite values are drawn as gaps).
    best_ii / majority_ii: iterations to mark (None: not marked)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not (len(ii) == len(obj) == len(norm)):
        raise ValueError(f"ii, obj and norm must have one value per iteration, got {len(ii)}, {len(obj)}, "
                         f"{len(norm)}")
    width, height = size_px
    fig = Figure(figsize=(width / CURVE_DPI, height / CURVE_DPI), dpi=CURVE_DPI)
    FigureCanvasAgg(fig)
    ax_obj, ax_norm = fig.subplots(2, 1, sharex=True)
    for ax, values, color, label in ((ax_obj, obj, OBJ_COLOR, "obj"), (ax_norm, norm, NORM_COLOR, "norm")):
        ax.plot(list(ii), [_finite_or_nan(v) for v in values], color=color, linewidth=1.2)
        ax.set_ylabel(label, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, linewidth=0.3, alpha=0.5)
        for mark, style in ((best_ii, "--"), (majority_ii, ":")):
            if mark is not None:
                ax.axvline(mark, color="0.35", linestyle=style, linewidth=0.8)
    ax_norm.set_xlabel("iteration", fontsize=8)
    if not ii:
        ax_obj.text(0.5, 0.5, "no iterations", ha="center", va="center", transform=ax_obj.transAxes)
    if title:
        ax_obj.set_title(title, fontsize=8)
    fig.subplots_adjust(left=0.14, right=0.97, top=0.92 if title else 0.97, bottom=0.13, hspace=0.1)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=CURVE_DPI, metadata={"Software": None})
    return buf.getvalue()


def write_curve(path: str, ii: Sequence[int], obj: Sequence[float], norm: Sequence[float],
                best_ii: Optional[int] = None, majority_ii: Optional[int] = None, title: str = "") -> None:
    """Write the curve PNG to ``path`` atomically (see ``curve_png``)."""
    write_bytes_atomic(path, curve_png(ii, obj, norm, best_ii, majority_ii, title))


def _finite_or_nan(value) -> float:
    value = float(value)
    return value if math.isfinite(value) else math.nan
