"""A unit's activation histogram in the gallery: crop_max_patches.py's ``histogram.txt`` drawn as inline SVG.

Inline SVG rather than the ``histogram.png`` beside it: drawn from the numbers, it stays sharp at any zoom, costs the
page no image request per unit (a layer's page shows hundreds), carries each bin's range and count as a tooltip, and
lets the page be tested in the browser bar by bar. The PNG, when written, is linked.

The figure: SVG_SIZE (width, height) pixels; the B bins as bars over [e_0, e_B] (x linear in the value, heights
proportional to the counts, the tallest PLOT_HEIGHT pixels), the unit's top-N values (from its info.txt) as red
ticks above them (a value beyond the range at its end), and below, the range and the under / overflow counts.
"""

from __future__ import annotations

import html
from typing import Sequence
from urllib.parse import quote

from dvtoolbox.io.gallery_exemplars import UnitHistogram

SVG_SIZE = (160, 56)
TICK_HEIGHT = 7
PLOT_TOP = 9
PLOT_HEIGHT = SVG_SIZE[1] - PLOT_TOP - 1
BAR_COLOR = "#4c72b0"
TOP_COLOR = "#d62728"


def bar_geometry(h: UnitHistogram):
    """(x, width, height) of each of the B bars, in SVG pixels (float)."""
    width_px = SVG_SIZE[0]
    lo, hi = h.edges[0], h.edges[-1]
    bins = h.counts[1:-1]
    tallest = max(max(bins), 1)

    def x(value):
        return (value - lo) / (hi - lo) * width_px
    return [(x(a), x(b) - x(a), count / tallest * PLOT_HEIGHT) for a, b, count in zip(h.edges, h.edges[1:], bins)]


def tick_x(h: UnitHistogram, value: float) -> float:
    lo, hi = h.edges[0], h.edges[-1]
    return (min(max(value, lo), hi) - lo) / (hi - lo) * SVG_SIZE[0]


def histogram_html(h: UnitHistogram, top_values: Sequence[float], name: str, href: str) -> str:
    """A ``<figure class="hist">`` with the inline SVG and its caption. top_values: the unit's top-N values (rank
    order); href: the exemplars folder relative to the page."""
    esc = html.escape
    width, height = SVG_SIZE
    base = PLOT_TOP + PLOT_HEIGHT
    bars = "".join(
        f'<rect class="bar" x="{x:.2f}" y="{base - bar_h:.2f}" width="{max(bar_w - 0.4, 0.2):.2f}" '
        f'height="{bar_h:.2f}" data-count="{count}"><title>{a:.4g} .. {b:.4g}: {count}</title></rect>'
        for (x, bar_w, bar_h), a, b, count in zip(bar_geometry(h), h.edges, h.edges[1:], h.counts[1:-1]))
    ticks = "".join(f'<line class="top" x1="{tick_x(h, v):.2f}" x2="{tick_x(h, v):.2f}" y1="0" y2="{TICK_HEIGHT}" '
                    f'data-value="{v!r}"><title>#{rank}: {v:.6g}</title></line>' for rank, v in enumerate(top_values))
    svg = (f'<svg class="histsvg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="{esc(name)}: activation histogram"><g fill="{BAR_COLOR}">{bars}</g>'
           f'<line x1="0" x2="{width}" y1="{base}" y2="{base}" stroke="#888" stroke-width="0.5"/>'
           f'<g stroke="{TOP_COLOR}" stroke-width="1.5">{ticks}</g></svg>')
    links = " ".join(f'<a href="{esc(quote(f"{href}/{path}"))}">{kind}</a>' for kind, path in h.files.items())
    outside = "".join(f", {label} {count}" for label, count in (("under", h.under), ("over", h.over)) if count)
    return (f'<figure class="hist" data-images="{sum(h.counts)}" title="{esc(h.header)}">{svg}'
            f'<figcaption>{h.edges[0]:.4g} .. {h.edges[-1]:.4g}, {sum(h.counts)} images{outside} {links}'
            '</figcaption></figure>')
