"""Each unit's top N images of a dataset: the streaming tracker, the exact merge, and the tracker file.

A unit's value in an image (the original toolbox's ``find_maxes/max_tracker.py``): an fc unit's activation; a conv
unit's MAX over its positions, its position the first argmax in row-major order (y, then x) on the layer's grid (the
layouts ``dvtoolbox.models.layouts.canonical`` reads: NCHW, NHWC, the patch tokens of a token layer on their grid);
a token layer without a grid (``include_prefix``, or no square grid) reads as one row of tokens: position (0, t).

Order, exactly the original's (its ``np.searchsorted`` insertion): highest value first; equal values: the EARLIER
image (lower index in the image list) ranks higher. A unit's top N holds at most one entry per image. Empty slots
(fewer images than N) have value -inf, image -1, position (0, 0) (the original used -1e99 and -1). As in the
original, a value must beat an empty slot to be kept: a unit whose value in an image is -inf or NaN is not recorded
for that image (``MaxesTracker.skipped_nan`` counts the NaN ones).

``merge(a, b)`` of two results over disjoint image sets is the result of one pass over both (order-independent).

The tracker file (``save_maxes`` / ``load_maxes``), written atomically at the user's ``outfile`` whatever its suffix,
is a numpy ``.npz`` read with ``allow_pickle=False``:

- ``meta``: a 0-d unicode array holding JSON: ``{"format": "dvtoolbox-max-tracker", "version": 2, "n_top": N,
  "hist_bins": B (0: no histogram),
  "layers": [{"name", "kind", "units", "grid": [h, w] or null}, ...], "images_done": int, "dataset": {...},
  "model": str, ...}``;
- ``paths``: (I,) unicode, the image list's paths relative to ``root`` (``meta["dataset"]["root"]``);
  ``labels``: (I,) int64, -1 where the list gives none;
- per layer L: ``values/L`` (U, N) float32, ``images/L`` (U, N) int64, ``positions/L`` (U, N, 2) int64 (y, x);
- a derived group (``exemplars.derived``) is a layer here, its definition in ``meta["derived"]`` and, for virtual
  channels, its (K, C) float32 matrix in ``weights/NAME``.
- version 2, when the run kept histograms (``meta["hist_bins"]`` > 0; ``exemplars.histogram``), per layer L:
  ``hist_counts/L`` (U, B+2) int64 (underflow, B bins, overflow), ``hist_edges/L`` (U, B+1) float32,
  ``hist_min/L``, ``hist_max/L`` (U,) float32, ``hist_count/L`` (U,) int64, ``hist_sum/L`` (U,) float64.
  Version 1 files (no histogram) still load.

``load_maxes`` also reads the original's Python 2 pickle of a ``max_tracker.NetMaxTracker`` (``find_max_acts.py``'s
``maxes.pkl``), telling the two apart by content, through a restricted unpickler that resolves only
``max_tracker.MaxTracker`` / ``NetMaxTracker`` and numpy's array reconstruction; anything else is refused in one
line before it is imported or called. Such a file holds no image paths: its ImageList is empty (the filelist the
original ran on gives them), and its meta has ``"format": "original NetMaxTracker"``.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from dvtoolbox.errors import UsageError
from dvtoolbox.exemplars.data import ImageList
from dvtoolbox.exemplars.histogram import HistogramCounter, LayerHistogram, empty_histogram, merge_optional
from dvtoolbox.io.atomic import atomic_open
from dvtoolbox.io.restricted_pickle import RestrictedUnpickler, numpy_globals

FORMAT = "dvtoolbox-max-tracker"
VERSION = 2
READABLE_VERSIONS = (1, 2)
HISTOGRAM_KEYS = (("counts", "hist_counts"), ("edges", "hist_edges"), ("minimum", "hist_min"),
                  ("maximum", "hist_max"), ("count", "hist_count"), ("total", "hist_sum"))
"""(LayerHistogram field, the tracker file's key prefix)."""
KINDS = ("conv", "fc", "tokens")
EMPTY_IMAGE = -1


@dataclass
class LayerMaxes:
    """One layer's top N per unit. values (U, N) float32, rank 0 the highest, -inf where empty; images (U, N) int64
    index into the image list, -1 where empty; positions (U, N, 2) int64 (y, x) on the layer's grid, (0, 0) for fc
    and where empty. kind: "conv" (a grid), "fc" (N, C), "tokens" (a row of tokens, no grid). histogram: each
    unit's histogram of its value over every image counted (``exemplars.histogram``), None when not kept."""

    layer: str
    kind: str
    values: np.ndarray
    images: np.ndarray
    positions: np.ndarray
    histogram: Optional[LayerHistogram] = None

    @property
    def n_top(self) -> int:
        return self.values.shape[1]

    @property
    def units(self) -> int:
        return self.values.shape[0]


def empty_maxes(layer: str, kind: str, units: int, n_top: int) -> LayerMaxes:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return LayerMaxes(layer, kind, np.full((units, n_top), -np.inf, np.float32),
                      np.full((units, n_top), EMPTY_IMAGE, np.int64), np.zeros((units, n_top, 2), np.int64))


def kind_of(layout) -> str:
    """A layer's kind from its ``models.layouts.Layout``: "fc" for NC, "tokens" for a token layer read without a
    grid (``include_prefix`` or no grid), else "conv"."""
    if layout.kind == "NC":
        return "fc"
    if layout.kind == "NTC" and (layout.grid is None or layout.include_prefix):
        return "tokens"
    return "conv"


# ---------------------------------------------------------------------------------------------------- the top N


def unit_values(channels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Each image's value and position per unit. channels: a canonical layer output, (B, C, H, W), (B, C, T) or
    (B, C). Returns values (B, C) float32 and positions (B, C, 2) int64 (y, x): the max over positions and its first
    argmax in row-major order ((0, 0) for (B, C); (0, t) for tokens)."""
    b, c = channels.shape[:2]
    if channels.dim() == 2:
        return channels.float(), torch.zeros((b, c, 2), dtype=torch.int64, device=channels.device)
    width = channels.shape[-1]
    flat = channels.reshape(b, c, -1).float()
    first = flat.argmax(dim=2, keepdim=True)  # torch documents the first maximal value's index (NaN counts as max)
    values = flat.gather(2, first).squeeze(2)
    first = first.squeeze(2)
    return values, torch.stack((first // width, first % width), dim=2)


def top_n(values: torch.Tensor, images: torch.Tensor, positions: torch.Tensor, n: int
          ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The best n candidates per unit: values (U, K), images (U, K) (distinct per unit, -1 for empty), positions
    (U, K, 2). Order: value descending, then image ascending; -inf / NaN candidates become empty and rank last."""
    bad = ~(values > -np.inf)  # -inf and NaN: not recorded (an empty slot)
    values = values.masked_fill(bad, -np.inf)
    images = images.masked_fill(bad, EMPTY_IMAGE)
    positions = positions.masked_fill(bad.unsqueeze(-1), 0)
    images_key = images.masked_fill(images < 0, torch.iinfo(torch.int64).max)  # empties after every image
    order = images_key.argsort(dim=1, stable=True)
    order = order.gather(1, values.gather(1, order).argsort(dim=1, descending=True, stable=True))[:, :n]
    return (values.gather(1, order), images.gather(1, order),
            positions.gather(1, order.unsqueeze(-1).expand(-1, -1, 2)))


class LayerTracker:
    """One layer's running top N, held on ``device`` (memory O(units x N), whatever the number of images)."""

    def __init__(self, layer: str, kind: str, units: int, n_top: int, device="cpu"):
        if not (isinstance(n_top, int) and n_top >= 1):
            raise UsageError(f"n_top must be an integer >= 1, got {n_top!r}", "n_top")
        start = empty_maxes(layer, kind, units, n_top)
        self.layer, self.kind, self.n_top = layer, kind, n_top
        self.values = torch.from_numpy(start.values).to(device)
        self.images = torch.from_numpy(start.images).to(device)
        self.positions = torch.from_numpy(start.positions).to(device)
        self.skipped_nan = 0
        self.histogram: Optional[HistogramCounter] = None  # counting starts with start_histogram(edges)

    def start_histogram(self, edges: np.ndarray) -> None:
        """Count every later image's unit value in bins of ``edges`` (U, B+1) (``exemplars.histogram``)."""
        if edges.shape[0] != self.values.shape[0]:
            raise ValueError(f"layer {self.layer!r}: edges for {edges.shape[0]} units, the tracker has "
                             f"{self.values.shape[0]}")
        self.histogram = HistogramCounter(empty_histogram(edges), self.values.device)

    def update(self, channels: torch.Tensor, image_indices: torch.Tensor) -> None:
        """channels: the layer's canonical output for a batch (B, C, ...); image_indices (B,) int64, their indices
        in the image list (none already seen)."""
        values, positions = unit_values(channels.detach())
        if values.shape[1] != self.values.shape[0]:
            raise ValueError(f"layer {self.layer!r}: {values.shape[1]} units, the tracker has {self.values.shape[0]}")
        self.skipped_nan += int(torch.isnan(values).sum())
        if self.histogram is not None:
            self.histogram.update(values)
        images = image_indices.to(self.images.device, torch.int64).unsqueeze(0).expand(values.shape[1], -1)
        self.values, self.images, self.positions = top_n(
            torch.cat((self.values, values.t().to(self.values.device)), 1),
            torch.cat((self.images, images), 1),
            torch.cat((self.positions, positions.transpose(0, 1).to(self.positions.device)), 1), self.n_top)

    def restore(self, saved: LayerMaxes) -> None:
        """Take up from a saved result of this layer (a checkpoint)."""
        if (saved.kind, saved.values.shape) != (self.kind, tuple(self.values.shape)):
            raise ValueError(f"layer {self.layer!r}: the saved result is {saved.kind} {saved.values.shape}, the "
                             f"tracker {self.kind} {tuple(self.values.shape)}")
        device = self.values.device
        self.values = torch.from_numpy(saved.values.astype(np.float32)).to(device)
        self.images = torch.from_numpy(saved.images.astype(np.int64)).to(device)
        self.positions = torch.from_numpy(saved.positions.astype(np.int64)).to(device)
        self.histogram = None if saved.histogram is None else HistogramCounter(saved.histogram, device)

    def result(self) -> LayerMaxes:
        return LayerMaxes(self.layer, self.kind, self.values.cpu().numpy().astype(np.float32),
                          self.images.cpu().numpy().astype(np.int64), self.positions.cpu().numpy().astype(np.int64),
                          None if self.histogram is None else self.histogram.result())


class MaxesTracker:
    """The running top N of several layers. layers: {name: (kind, units)}, in order."""

    def __init__(self, layers: Mapping[str, Tuple[str, int]], n_top: int, device="cpu"):
        self.n_top = n_top
        self.layers = {name: LayerTracker(name, kind, units, n_top, device) for name, (kind, units) in layers.items()}

    def update(self, outputs: Mapping[str, torch.Tensor], image_indices: torch.Tensor) -> None:
        """outputs: each layer's canonical output for the batch; image_indices (B,) their indices in the list."""
        for name, tracker in self.layers.items():
            tracker.update(outputs[name], image_indices)

    @property
    def skipped_nan(self) -> int:
        return sum(t.skipped_nan for t in self.layers.values())

    def restore(self, saved: Mapping[str, LayerMaxes]) -> None:
        """Take up from a saved result of the same layers (a checkpoint)."""
        if list(saved) != list(self.layers):
            raise ValueError(f"the saved result has layers {list(saved)}, the tracker {list(self.layers)}")
        for name, tracker in self.layers.items():
            tracker.restore(saved[name])

    def result(self) -> Dict[str, LayerMaxes]:
        return {name: tracker.result() for name, tracker in self.layers.items()}

    def start_histograms(self, edges: Mapping[str, np.ndarray]) -> None:
        """Histograms of every layer from now on, over ``edges`` {layer: (U, B+1)}."""
        for name, tracker in self.layers.items():
            tracker.start_histogram(edges[name])

    def histogram_edges(self) -> Optional[Dict[str, np.ndarray]]:
        """{layer: edges} when every layer keeps a histogram (a restored checkpoint's), else None."""
        if not all(t.histogram is not None for t in self.layers.values()):
            return None
        return {name: t.histogram.edges.cpu().numpy() for name, t in self.layers.items()}


def merge_layer(a: LayerMaxes, b: LayerMaxes) -> LayerMaxes:
    """The top N of one pass over both image sets, from two results over disjoint image sets (same layer, kind,
    units and N). Exact and order-independent: ``merge_layer(a, b) == merge_layer(b, a)``."""
    if (a.layer, a.kind, a.values.shape) != (b.layer, b.kind, b.values.shape):
        raise ValueError(f"cannot merge {a.layer} ({a.kind}, {a.values.shape}) with {b.layer} ({b.kind}, "
                         f"{b.values.shape})")
    seen_a, seen_b = set(a.images[a.images >= 0].tolist()), set(b.images[b.images >= 0].tolist())
    # only images that rank are seen here: this catches overlapping shards often, not always (the job's sharding
    # guarantees disjoint sets)
    both = seen_a & seen_b
    if both:
        raise ValueError(f"layer {a.layer!r}: the two results share image(s) {sorted(both)[:5]}: not disjoint")
    values, images, positions = top_n(torch.from_numpy(np.concatenate((a.values, b.values), 1)),
                                      torch.from_numpy(np.concatenate((a.images, b.images), 1)),
                                      torch.from_numpy(np.concatenate((a.positions, b.positions), 1)), a.n_top)
    return LayerMaxes(a.layer, a.kind, values.numpy(), images.numpy(), positions.numpy(),
                      merge_optional(a.histogram, b.histogram, a.layer))


def merge(a: Mapping[str, LayerMaxes], b: Mapping[str, LayerMaxes]) -> Dict[str, LayerMaxes]:
    """``merge_layer`` for each layer of two results over the same layers."""
    if list(a) != list(b):
        raise ValueError(f"cannot merge results of different layers: {list(a)} and {list(b)}")
    return {name: merge_layer(a[name], b[name]) for name in a}


# ---------------------------------------------------------------------------------------------------- the file


def save_maxes(path: str, maxes: Mapping[str, LayerMaxes], images: ImageList, meta: Optional[dict] = None,
               extra_arrays: Optional[Mapping[str, np.ndarray]] = None) -> None:
    """Write the tracker file atomically (format in the module docstring). meta: extra JSON-able entries
    (``images_done``, ``dataset``, ``model``, ...); format, version, n_top and layers are set here. extra_arrays:
    more arrays by key (a derived group's ``weights/NAME``, ``exemplars.derived``)."""
    layers = list(maxes.values())
    n_tops = {m.n_top for m in layers}
    if len(n_tops) > 1:
        raise ValueError(f"all layers must keep the same N, got {sorted(n_tops)}")
    full = dict(meta or {})
    bins = {0 if m.histogram is None else m.histogram.bins for m in layers}
    if len(bins) > 1:
        raise ValueError(f"all layers must keep a histogram of the same bins, or none; got {sorted(bins)}")
    full.update(format=FORMAT, version=VERSION, n_top=n_tops.pop() if n_tops else 0, hist_bins=max(bins, default=0),
                layers=[{"name": m.layer, "kind": m.kind, "units": m.units} for m in layers])
    full["dataset"] = {**images.description, **full.get("dataset", {}), "root": images.root}
    arrays = {"meta": np.array(json.dumps(full)),
              "paths": np.array(list(images.paths), dtype=str) if images.paths else np.zeros(0, "<U1"),
              "labels": np.asarray(images.labels, np.int64).reshape(-1)}
    for m in layers:
        arrays[f"values/{m.layer}"] = m.values.astype(np.float32)
        arrays[f"images/{m.layer}"] = m.images.astype(np.int64)
        arrays[f"positions/{m.layer}"] = m.positions.astype(np.int64)
        if m.histogram is not None:
            arrays.update({f"{key}/{m.layer}": getattr(m.histogram, field) for field, key in HISTOGRAM_KEYS})
    arrays.update({key: np.asarray(value) for key, value in (extra_arrays or {}).items() if key not in arrays})
    with atomic_open(path, "wb") as handle:
        np.savez(handle, **arrays)


def load_maxes(path: str) -> Tuple[dict, ImageList, Dict[str, LayerMaxes]]:
    """Read a tracker file: dvtoolbox's (a zip) or the original's Python 2 NetMaxTracker pickle. Returns (meta,
    the image list, {layer: LayerMaxes}) in the file's layer order. A file that is neither, or damaged, is a
    one-line UsageError naming ``path``."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    if data[:4] == b"PK\x03\x04":
        return _load_own(path, data)
    if data[:1] == b"\x80":
        return _load_original(path, data)
    raise UsageError(f"{path} is not a max-tracker file (neither dvtoolbox's .npz nor the original's pickle)")


def _load_own(path: str, data: bytes) -> Tuple[dict, ImageList, Dict[str, LayerMaxes]]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        meta = json.loads(str(arrays["meta"][()]))
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{path} is a damaged max-tracker file ({' '.join(str(exc).split())})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UsageError(f"{path} is a zip but not a {FORMAT} file")
    if meta.get("version") not in READABLE_VERSIONS:
        raise UsageError(f"{path} is a {FORMAT} file of version {meta.get('version')!r}; this dvtoolbox reads "
                         f"versions {', '.join(map(str, READABLE_VERSIONS))}")
    try:
        maxes = {}
        for entry in meta["layers"]:
            name, kind = entry["name"], entry["kind"]
            maxes[name] = LayerMaxes(name, kind, arrays[f"values/{name}"], arrays[f"images/{name}"],
                                     arrays[f"positions/{name}"], _load_histogram(arrays, name, meta))
            _check_layer(maxes[name], meta["n_top"])
        images = ImageList([str(p) for p in arrays["paths"]], [int(v) for v in arrays["labels"]],
                           meta.get("dataset", {}).get("root", ""), meta.get("dataset", {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{path} is a damaged max-tracker file ({' '.join(str(exc).split())})") from None
    return meta, images, maxes


def _load_histogram(arrays: Mapping[str, np.ndarray], name: str, meta: dict) -> Optional[LayerHistogram]:
    """Layer ``name``'s histogram (version 2 with hist_bins > 0), else None; ValueError when it does not fit."""
    if meta.get("version") == 1 or not meta.get("hist_bins"):
        return None
    histogram = LayerHistogram(**{field: arrays[f"{key}/{name}"] for field, key in HISTOGRAM_KEYS})
    histogram.check(name)
    if histogram.bins != meta["hist_bins"]:
        raise ValueError(f"layer {name!r}: {histogram.bins} histogram bins, the meta says {meta['hist_bins']}")
    return histogram


def _check_layer(m: LayerMaxes, n_top: int) -> None:
    units = m.values.shape[0] if m.values.ndim == 2 else -1
    if (m.kind not in KINDS or m.values.shape != (units, n_top) or m.images.shape != (units, n_top)
            or m.positions.shape != (units, n_top, 2)):
        raise ValueError(f"layer {m.layer!r}: kind {m.kind!r}, shapes {m.values.shape}, {m.images.shape}, "
                         f"{m.positions.shape} do not fit N={n_top}")
    if m.histogram is not None and m.histogram.units != units:
        raise ValueError(f"layer {m.layer!r}: a histogram of {m.histogram.units} units for {units} units")


# ---------------------------------------------------------------------------------------------------- the original


class _OriginalMaxTracker:
    """Stand-in for ``max_tracker.MaxTracker``: BUILD fills ``__dict__`` (is_conv, max_vals (U, N) ascending,
    max_locs (U, N, 4) (image_idx, image_class, i, j) or (U, N, 2), n_top)."""


class _OriginalNetMaxTracker:
    """Stand-in for ``max_tracker.NetMaxTracker``: ``__dict__`` has layers, is_conv, n_top, max_trackers, ..."""


def _allowed_globals() -> Dict[Tuple[str, str], Any]:
    allowed = numpy_globals()
    allowed.update({("max_tracker", "MaxTracker"): _OriginalMaxTracker,
                    ("max_tracker", "NetMaxTracker"): _OriginalNetMaxTracker})
    return allowed


def _load_original(path: str, data: bytes) -> Tuple[dict, ImageList, Dict[str, LayerMaxes]]:
    try:
        loaded = RestrictedUnpickler(io.BytesIO(data), path, _allowed_globals(), "a max-tracker pickle",
                                     "max_tracker.MaxTracker, NetMaxTracker and numpy arrays").load()
    except UsageError:
        raise
    except Exception as exc:  # a damaged or foreign pickle fails in any way; all are bad input
        raise UsageError(f"{path} is not a NetMaxTracker pickle ({' '.join(f'{type(exc).__name__}: {exc}'.split())})"
                         ) from None
    if not isinstance(loaded, _OriginalNetMaxTracker):
        raise UsageError(f"{path} holds a {type(loaded).__name__}, expected the original's NetMaxTracker")
    try:
        state = loaded.__dict__
        layers: Sequence[str] = list(state["layers"])
        maxes = {name: _from_original(name, state["max_trackers"][name].__dict__) for name in layers}
        n_top = int(state["n_top"])
        for m in maxes.values():
            _check_layer(m, n_top)
    except (KeyError, AttributeError, TypeError, ValueError, IndexError) as exc:
        raise UsageError(f"{path}: a damaged NetMaxTracker ({' '.join(f'{type(exc).__name__}: {exc}'.split())})"
                         ) from None
    meta = {"format": "original NetMaxTracker", "version": None, "n_top": n_top,
            "layers": [{"name": m.layer, "kind": m.kind, "units": m.units} for m in maxes.values()]}
    return meta, ImageList([], [], ""), maxes


def _from_original(name: str, state: Dict[str, Any]) -> LayerMaxes:
    """The original stores each unit's maxes ascending (the highest last) with -1e99 / image -1 where empty."""
    vals = np.asarray(state["max_vals"])[:, ::-1]
    locs = np.asarray(state["max_locs"])[:, ::-1]
    is_conv = bool(state["is_conv"])
    if vals.ndim != 2 or locs.shape != vals.shape + (4 if is_conv else 2,):
        raise ValueError(f"layer {name!r}: max_vals {vals.shape} and max_locs {locs.shape} do not fit")
    images = locs[..., 0].astype(np.int64)
    empty = images < 0
    values = np.where(empty, -np.inf, vals).astype(np.float32)
    positions = locs[..., 2:4].astype(np.int64) if is_conv else np.zeros(vals.shape + (2,), np.int64)
    positions[empty] = 0
    return LayerMaxes(name, "conv" if is_conv else "fc", values, np.where(empty, EMPTY_IMAGE, images),
                      np.ascontiguousarray(positions))


__all__ = ["LayerMaxes", "LayerTracker", "MaxesTracker", "merge", "merge_layer", "save_maxes", "load_maxes",
           "unit_values", "top_n", "empty_maxes", "kind_of", "FORMAT", "VERSION", "KINDS"]
