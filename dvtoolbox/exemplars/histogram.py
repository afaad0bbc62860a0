"""Each unit's activation histogram over a dataset: fixed bins, counted on the model's device, merged by addition.

A unit's value in an image is the one the top N ranks (``tracker.unit_values``: a conv unit's max over positions, an
fc unit's activation, a token feature's max over tokens). Per unit the histogram keeps, whatever the number of
images (memory O(units x bins)):

- ``edges`` (U, B+1) float32, increasing: B bins ``[e_k, e_k+1)``, the last one closed ``[e_B-1, e_B]``
  (``np.histogram``'s rule);
- ``counts`` (U, B+2) int64: column 0 the underflow (values < e_0, -inf included), columns 1..B the bins, column
  B+1 the overflow (values > e_B, +inf included);
- ``minimum``, ``maximum`` (U,) float32, the exact extremes (+inf / -inf where nothing was counted); ``count`` (U,)
  int64, the values counted (``counts.sum(1)``); ``total`` (U,) float64, their sum (the mean is total / count).

NaN values are not counted anywhere (the top N counts them as skipped). Two histograms with the same edges over
disjoint image sets merge exactly by adding counts and totals and taking min / max (``merge_histograms``); the
totals are float64 sums, equal to one pass up to the order of the additions (float64 rounding), everything else is
exact.

The edges (``calibrated_edges``): fixed before any image is counted, from the unit's values on a calibration set
(the first images of the list, the same in every torchrun rank and in a resumed run): the range [lo, hi] of those
values, widened by ``MARGIN`` x (hi - lo) on each side, then laid on a grid: the bin width w is the smallest number
of the form 2^k or 1.5 x 2^k such that the multiple of w at or below the widened lo, e_0, has e_0 + B w >= the
widened hi; e_k = e_0 + k w (B >= 2 bins; the bins cover the widened range with 67 % to 100 % of their span). Such
edges are exact in float32 (0 is an edge whenever it lies in range, so a ReLU's zeros sit on an edge, counted in the
bin above it), readable (0.25, 0.75, 1.5, ...), and a calibration value a rounding away almost never moves them
(only where the widened lo crosses a multiple of w, or the span a step of the widths). A span below
``max(|lo|, |hi|) / 256`` (a constant unit) is widened to that, and a unit whose calibration values are all zero or
not finite gets span 1 around its value (0 when none).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

DEFAULT_BINS = 32
MIN_BINS = 2
MAX_BINS = 1024
MARGIN = 0.25
CALIBRATION_IMAGES = 64
LIMIT = 1e36
"""Calibration values beyond +-LIMIT are clipped to it, so that the edges stay finite in float32."""
TINY = 1e-30
"""The least span of a unit's edges, so that the bin width stays a normal float32."""


@dataclass
class LayerHistogram:
    """One layer's per-unit histograms (see the module docstring for the arrays' meaning)."""

    edges: np.ndarray
    counts: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray
    count: np.ndarray
    total: np.ndarray

    @property
    def bins(self) -> int:
        return self.edges.shape[1] - 1

    @property
    def units(self) -> int:
        return self.edges.shape[0]

    def mean(self) -> np.ndarray:
        """(U,) float64, NaN where nothing was counted."""
        return np.where(self.count > 0, self.total / np.maximum(self.count, 1), np.nan)

    def check(self, name: str = "") -> None:
        """ValueError unless the arrays fit each other (shapes, increasing finite edges, counts >= 0)."""
        if self.edges.ndim != 2:
            raise ValueError(f"histogram {name!r}: edges must be (U, B+1), got {self.edges.shape}")
        units, bins = self.edges.shape[0], self.edges.shape[1] - 1
        shapes = {"edges": (units, bins + 1), "counts": (units, bins + 2), "minimum": (units,),
                  "maximum": (units,), "count": (units,), "total": (units,)}
        for key, shape in shapes.items():
            if getattr(self, key).shape != shape:
                raise ValueError(f"histogram {name!r}: {key} is {getattr(self, key).shape}, expected {shape}")
        if bins < 1 or not np.isfinite(self.edges).all() or not (np.diff(self.edges, axis=1) > 0).all():
            raise ValueError(f"histogram {name!r}: the edges must be finite and increasing, with 1 bin or more")
        if (self.counts < 0).any() or (self.counts.sum(1) != self.count).any():
            raise ValueError(f"histogram {name!r}: the counts must be >= 0 and add up to count")


def empty_histogram(edges: np.ndarray) -> LayerHistogram:
    """Nothing counted yet, over ``edges`` (U, B+1)."""
    edges = np.asarray(edges, np.float32)
    units = edges.shape[0]
    return LayerHistogram(edges, np.zeros((units, edges.shape[1] + 1), np.int64), np.full(units, np.inf, np.float32),
                          np.full(units, -np.inf, np.float32), np.zeros(units, np.int64), np.zeros(units, np.float64))


# ---------------------------------------------------------------------------------------------------- the edges


def edges_from_range(lo: np.ndarray, hi: np.ndarray, bins: int, margin: float = MARGIN) -> np.ndarray:
    """(U, bins + 1) float32 edges (bins >= 2) on a grid covering [lo, hi] widened by ``margin`` x (hi - lo) on
    each side (see the module docstring). lo, hi: (U,) finite, lo <= hi."""
    lo = np.clip(np.asarray(lo, np.float64), -LIMIT, LIMIT)
    hi = np.clip(np.asarray(hi, np.float64), -LIMIT, LIMIT)
    edges = np.empty((lo.shape[0], bins + 1), np.float64)
    for unit, (low, high) in enumerate(zip(lo, hi)):
        edges[unit] = _unit_edges(float(low), float(high), bins, margin)
    return edges.astype(np.float32)


def _unit_edges(low: float, high: float, bins: int, margin: float) -> np.ndarray:
    scale = max(abs(low), abs(high))
    least = max(scale / 256, TINY) if scale > 0 else 1.0
    if high - low < least:
        middle = (low + high) / 2
        low, high = middle - least / 2, middle + least / 2
    low, high = low - (high - low) * margin, high + (high - low) * margin
    for width in _grid_widths((high - low) / bins):
        first = math.floor(low / width) * width
        if first + bins * width >= high:  # (bins - 1) * width >= high - low is enough
            return first + width * np.arange(bins + 1, dtype=np.float64)
    raise AssertionError("unreachable")


def _grid_widths(least: float):
    """The bin widths 2^k and 1.5 x 2^k that are >= least, ascending (each multiple exact in float32)."""
    k = math.floor(math.log2(least)) - 1
    while True:
        for width in (2.0 ** k, 1.5 * 2.0 ** k):
            if width >= least:
                yield width
        k += 1


def calibrated_edges(values: torch.Tensor, bins: int, margin: float = MARGIN) -> np.ndarray:
    """Edges from calibration values (C, U) (each image's unit value, any device): the finite values' range per
    unit (none finite: [0, 0])."""
    values = values.detach().float()
    if values.shape[0] == 0:
        return edges_from_range(np.zeros(values.shape[1]), np.zeros(values.shape[1]), bins, margin)
    finite = torch.isfinite(values)
    lo = values.masked_fill(~finite, np.inf).amin(0).cpu().double().numpy()
    hi = values.masked_fill(~finite, -np.inf).amax(0).cpu().double().numpy()
    none = ~np.isfinite(lo)
    lo[none], hi[none] = 0.0, 0.0
    return edges_from_range(lo, hi, bins, margin)


# ---------------------------------------------------------------------------------------------------- counting


class HistogramCounter:
    """One layer's running histograms on ``device``: ``update(values)`` per batch, vectorised over the units (one
    ``searchsorted`` of each value among its unit's edges and one ``scatter_add_``; no synchronisation)."""

    def __init__(self, start: LayerHistogram, device="cpu"):
        start.check()
        self.bins = start.bins
        self.edges = torch.from_numpy(np.ascontiguousarray(start.edges, np.float32)).to(device)
        self.counts = torch.from_numpy(start.counts.astype(np.int64)).to(device)
        self.minimum = torch.from_numpy(start.minimum.astype(np.float32)).to(device)
        self.maximum = torch.from_numpy(start.maximum.astype(np.float32)).to(device)
        self.count = torch.from_numpy(start.count.astype(np.int64)).to(device)
        self.total = torch.from_numpy(start.total.astype(np.float64)).to(device)
        units = self.edges.shape[0]
        self.offsets = (torch.arange(units, device=device, dtype=torch.int64) * (self.bins + 2)).unsqueeze(1)

    def update(self, values: torch.Tensor) -> None:
        """values: (B, U) float32, each image's value per unit (NaN: not counted)."""
        v = values.detach().to(self.edges.device, torch.float32).t().contiguous()  # (U, B)
        counted = ~torch.isnan(v)
        column = torch.searchsorted(self.edges, v, right=True)  # 0: below e_0, k: [e_k-1, e_k), B+1: >= e_B
        column = torch.where(v == self.edges[:, -1:], torch.full_like(column, self.bins), column)  # e_B: last bin
        self.counts.view(-1).scatter_add_(0, (column + self.offsets).view(-1), counted.view(-1).to(torch.int64))
        self.minimum = torch.minimum(self.minimum, v.masked_fill(~counted, np.inf).amin(1))
        self.maximum = torch.maximum(self.maximum, v.masked_fill(~counted, -np.inf).amax(1))
        self.count += counted.sum(1)
        self.total += v.masked_fill(~counted, 0.0).double().sum(1)

    def result(self) -> LayerHistogram:
        return LayerHistogram(self.edges.cpu().numpy().copy(), self.counts.cpu().numpy().copy(),
                              self.minimum.cpu().numpy().copy(), self.maximum.cpu().numpy().copy(),
                              self.count.cpu().numpy().copy(), self.total.cpu().numpy().copy())


def merge_histograms(a: LayerHistogram, b: LayerHistogram, name: str = "") -> LayerHistogram:
    """The histogram of one pass over both image sets (disjoint; the same edges exactly, else ValueError)."""
    if a.edges.shape != b.edges.shape or not np.array_equal(a.edges, b.edges):
        raise ValueError(f"layer {name!r}: the histograms have different bin edges and cannot be merged")
    return LayerHistogram(a.edges.copy(), a.counts + b.counts, np.minimum(a.minimum, b.minimum),
                          np.maximum(a.maximum, b.maximum), a.count + b.count, a.total + b.total)


def merge_optional(a: Optional[LayerHistogram], b: Optional[LayerHistogram], name: str = ""
                   ) -> Optional[LayerHistogram]:
    """``merge_histograms``, or None when neither has one (only one: ValueError)."""
    if a is None and b is None:
        return None
    if a is None or b is None:
        raise ValueError(f"layer {name!r}: only one of the two results has a histogram")
    return merge_histograms(a, b, name)


# ---------------------------------------------------------------------------------------------------- the text


def histogram_text(h: LayerHistogram, unit: int, layer: str) -> str:
    """``histogram.txt`` of one unit: a header comment line, then one row ``lower upper count`` per column of
    ``counts``: the underflow (-inf, e_0), the B bins, the overflow (e_B, inf). Edges as %.9g (exact float32)."""
    edges = [float(e) for e in h.edges[unit]]
    lowers, uppers = [-math.inf] + edges, edges + [math.inf]
    mean = h.mean()[unit]
    header = (f"# histogram layer={layer} unit={unit} bins={h.bins} count={int(h.count[unit])} "
              f"min={float(h.minimum[unit]):.9g} max={float(h.maximum[unit]):.9g} mean={float(mean):.9g}; "
              "rows: lower upper count, the first the underflow, the last the overflow")
    rows = [f"{lower:.9g} {upper:.9g} {int(c)}" for lower, upper, c in zip(lowers, uppers, h.counts[unit])]
    return "\n".join([header] + rows) + "\n"


__all__ = ["LayerHistogram", "HistogramCounter", "empty_histogram", "edges_from_range", "calibrated_edges",
           "merge_histograms", "merge_optional", "histogram_text", "DEFAULT_BINS", "MIN_BINS", "MAX_BINS", "MARGIN",
           "CALIBRATION_IMAGES"]
