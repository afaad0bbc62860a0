"""Derived units for find_max_acts and crop_max_patches: sums of channels and directions, each a group tracked
like a layer.

- ``--unit NAME=EXPR``: EXPR in the objective grammar (``objectives.expression``), linear only. If every term is
  ``layer:channel`` of ONE layer, the group is one virtual channel of that layer: the combination of the channel
  vectors at every position of its grid (a conv grid, a token row or an fc layer's single position), tracked exactly
  as a channel (max over positions, the first argmax recorded), so its crops come from the layer's receptive field.
  Otherwise (a ``layer:channel:y:x`` / ``layer:channel:token`` term, or terms on several layers) it is one value per
  image, kind fc: each term's value as find_max_acts defines a unit's (a channel: its max over positions; a neuron
  term: its value at that position), combined linearly; its crop is the whole image.
- ``--directions NAME=LAYER:FILE.npy``: a (K, C) or (C,) float array (read with ``allow_pickle=False``): K virtual
  channels of LAYER, unit k's value at a position the plain dot product of row k with the channel vector there
  (not a cosine similarity), max over positions.

Every group is read from the layers' canonical outputs (``models.layouts.canonical``: (B, C, H, W), (B, C, T) or
(B, C)) in float32. The tracker file records each group under its NAME like a layer, its definition in
``meta["derived"]`` and its (K, C) float32 matrix (a one-layer sum's coefficients) as ``weights/NAME``, so that
crop_max_patches needs neither the expression's model nor the .npy again. Backprop and deconv of a derived unit start
from its seed: the direction (the coefficients) at the recorded position instead of a one-hot; a per-image sum's
seed puts each term's coefficient at its position (a channel term: its first argmax in that image).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import re
import zipfile
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from dvtoolbox.errors import UsageError
from dvtoolbox.exemplars.tracker import kind_of
from dvtoolbox.exemplars.unit_pages import DerivedSource, TopN
from dvtoolbox.exemplars.patches import seeded_input_gradient
from dvtoolbox.models.capture import LayerCapture, forward_captured, named_layers
from dvtoolbox.models.layouts import Layout, canonical, canonical_shape, survey_layers, with_include_prefix
from dvtoolbox.objectives.expression import NotLinear, linear_terms

NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")

Term = Tuple[str, int, Tuple[int, ...]]  # (layer, channel, where): where () a channel, (token,), (y, x)


@dataclass(frozen=True)
class UnitDefinition:
    """One --unit or --directions flag, read at the edge (before the model). source: "unit" or "directions";
    text: what followed NAME=; terms: the expression's {term: coefficient} (unit); layer, matrix (K, C) float32,
    file, sha256: the directions'."""

    name: str
    source: str
    text: str
    terms: Mapping[Term, float] = field(default_factory=dict)
    layer: Optional[str] = None
    matrix: Optional[np.ndarray] = None
    file: Optional[str] = None
    sha256: Optional[str] = None

    @property
    def layers(self) -> Tuple[str, ...]:
        """The model layers the group reads, in order of first mention."""
        if self.source == "directions":
            return (self.layer,)
        return tuple(dict.fromkeys(layer for layer, _, _ in self.terms))

    @property
    def is_virtual_channel(self) -> bool:
        """Directions, or a sum of whole channels of one layer: virtual channels on the layer's grid."""
        return self.source == "directions" or (len(self.layers) == 1 and all(not w for _, _, w in self.terms))


def _split_name(text: str, field_name: str, form: str) -> Tuple[str, str]:
    """(NAME, the rest) of ``NAME=...``; a missing or malformed NAME is a one-line UsageError naming the flag."""
    name, sep, rest = str(text).partition("=")
    name = name.strip()
    if not sep or not rest.strip():
        raise UsageError(f"{field_name} {text!r}: write {form}", field_name)
    if not name:
        raise UsageError(f"{field_name} {text!r}: NAME is empty; write {form}", field_name)
    if not NAME_PATTERN.match(name):
        raise UsageError(f"{field_name} {text!r}: NAME {name!r} must be a letter or _ then letters, digits, _ . - "
                         f"(it names the group's folder); write {form}", field_name)
    return name, rest.strip()


def parse_unit(text: str) -> UnitDefinition:
    """``NAME=EXPR`` (the --unit flag): a linear expression of unit terms (else a one-line UsageError naming
    --unit)."""
    form = "NAME=EXPR, EXPR a linear combination of layer:channel[:y:x] terms, e.g. 'pair=fc8:1 + 0.5 * fc8:2'"
    name, expr = _split_name(text, "unit", form)
    try:
        terms = linear_terms(expr)
    except (NotLinear, UsageError) as exc:
        raise UsageError(f"unit {name}={expr}: {exc}", "unit") from None
    terms = {key: coef for key, coef in terms.items() if coef != 0}
    if not terms:
        raise UsageError(f"unit {name}={expr}: the terms cancel; nothing is left to track", "unit")
    if not all(math.isfinite(c) for c in terms.values()):
        raise UsageError(f"unit {name}={expr}: a coefficient is not finite", "unit")
    return UnitDefinition(name, "unit", expr, terms=terms)


def read_direction_matrix(path: str, flag_text: str) -> Tuple[np.ndarray, str]:
    """((K, C) float32, the file's sha256) of a .npy file of a (K, C) or (C,) finite float array, read with
    ``allow_pickle=False`` (a pickled array is refused, so no code runs); else a one-line UsageError naming
    --directions."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise UsageError(f"directions {flag_text}: cannot read {path}: {exc.strerror or exc}", "directions") from None
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(f"directions {flag_text}: {path} is not a plain .npy array ({' '.join(str(exc).split())}); "
                         "save it with numpy.save, without pickled objects", "directions") from None
    if not isinstance(array, np.ndarray):
        array.close()
        raise UsageError(f"directions {flag_text}: {path} is an .npz archive; give one .npy array of shape (K, C) "
                         "or (C,)", "directions")
    if array.dtype.kind != "f" or array.ndim not in (1, 2) or array.size == 0:
        raise UsageError(f"directions {flag_text}: {path} holds a {array.dtype} array of shape {array.shape}; "
                         "expected a float array of shape (K, C) or (C,)", "directions")
    if not np.isfinite(array).all():
        raise UsageError(f"directions {flag_text}: {path} holds NaN or infinite values", "directions")
    return np.ascontiguousarray(array.reshape(-1, array.shape[-1]), np.float32), hashlib.sha256(data).hexdigest()


def parse_directions(text: str) -> UnitDefinition:
    """``NAME=LAYER:FILE.npy`` (the --directions flag): the file read now (see ``read_direction_matrix``)."""
    name, rest = _split_name(text, "directions", "NAME=LAYER:FILE.npy, e.g. 'dirs=conv5:directions.npy'")
    layer, sep, path = rest.partition(":")
    if not sep or not layer.strip() or not path.strip():
        raise UsageError(f"directions {text!r}: write NAME=LAYER:FILE.npy", "directions")
    matrix, digest = read_direction_matrix(path.strip(), repr(text))
    return UnitDefinition(name, "directions", rest, layer=layer.strip(), matrix=matrix, file=path.strip(),
                          sha256=digest)


# ---------------------------------------------------------------------------------------------------- bound groups


@dataclass(frozen=True)
class LayerRead:
    """How a layer is read: its layout (include_prefix applied), kind (conv / fc / tokens) and canonical shape
    without the batch, (C, H, W), (C, T) or (C,)."""

    layout: Layout
    kind: str
    shape: Tuple[int, ...]


@dataclass(frozen=True)
class DerivedGroup:
    """A group bound to a model's layers. weights (K, C) float32 for virtual channels of ``layer`` (None for a
    per-image sum, whose ``terms`` are read instead); kind: the tracker's (the layer's for virtual channels, "fc"
    for a per-image sum); reads: {layer: LayerRead} of the layers it reads; definition: what the file records."""

    name: str
    kind: str
    reads: Mapping[str, LayerRead]
    definition: dict
    layer: Optional[str] = None
    weights: Optional[np.ndarray] = None
    terms: Mapping[Term, float] = field(default_factory=dict)

    @property
    def units(self) -> int:
        return 1 if self.weights is None else self.weights.shape[0]

    def values(self, outputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The group's activations from the layers' canonical outputs of a batch: virtual channels (B, K, ...) on
        the layer's grid, or a per-image sum (B, 1); float32."""
        if self.weights is not None:
            acts = outputs[self.layer].float()
            b, c = acts.shape[:2]
            weights = torch.from_numpy(self.weights).to(acts.device)
            flat = torch.einsum("kc,bcp->bkp", weights, acts.reshape(b, c, -1))
            return flat.reshape((b, self.units) + tuple(acts.shape[2:]))
        total = None
        for (layer, channel, where), coef in self.terms.items():
            value = _term_value(outputs[layer].float(), channel, where)
            total = coef * value if total is None else total + coef * value
        return total.unsqueeze(1)

    def seeds(self, outputs: Mapping[str, torch.Tensor], unit: int, yx: Tuple[int, int]) -> Dict[str, torch.Tensor]:
        """The gradient to start backprop / deconv from, {layer: seed of the canonical shape of one image}:
        ``weights[unit]`` at position yx of the layer (virtual channels), or each term's coefficient at its position
        (a channel term: its first argmax in this image). outputs: {layer: canonical output of this image (C, ...)}."""
        if self.weights is not None:
            out = outputs[self.layer]
            seed = torch.zeros(out.shape, dtype=torch.float32, device=out.device)
            vector = torch.from_numpy(self.weights[unit]).to(out.device)
            if seed.dim() == 1:
                seed[:] = vector
            elif seed.dim() == 2:
                seed[:, yx[1]] = vector
            else:
                seed[:, yx[0], yx[1]] = vector
            return {self.layer: seed}
        seeds = {layer: torch.zeros(outputs[layer].shape, dtype=torch.float32, device=outputs[layer].device)
                 for layer in self.reads}
        for (layer, channel, where), coef in self.terms.items():
            out = outputs[layer][channel]
            if where:
                index = where
            else:
                index = np.unravel_index(int(out.reshape(-1).float().argmax()), tuple(out.shape)) if out.dim() else ()
            seeds[layer][(channel,) + tuple(int(i) for i in index)] += coef
        return seeds


def _term_value(acts: torch.Tensor, channel: int, where: Tuple[int, ...]) -> torch.Tensor:
    """(B,) a term's value per image: a channel's max over positions (fc: its activation), a neuron's value."""
    one = acts[:, channel]
    if where:
        return one[(slice(None),) + tuple(where)]
    return one.reshape(one.shape[0], -1).max(dim=1).values if one.dim() > 1 else one


def _placed_term(defn: UnitDefinition, term: Term, read: LayerRead) -> Term:
    """The term with its position on the canonical map: (y, x) on a grid, (t,) on a row of tokens; a token of a
    grid-read token layer (counted among all tokens, as the grammar counts them) becomes its (y, x). A term that
    does not fit the layer is a one-line UsageError naming --unit."""
    layer, channel, where = term
    shape = read.shape
    bad = ""
    if not 0 <= channel < shape[0]:
        bad = f"channel {channel} is out of range: layer {layer!r} has {shape[0]} channels"
    elif len(where) == 2 and (len(shape) != 3 or not (0 <= where[0] < shape[1] and 0 <= where[1] < shape[2])):
        bad = (f"position (y, x) = {where} is not on layer {layer!r}'s grid" +
               (f" ({shape[1]} x {shape[2]})" if len(shape) == 3 else f" (it has none: {read.kind})"))
    elif len(where) == 1:
        token = where[0]
        if read.layout.kind != "NTC":
            bad = f"token {token} needs a token layer; layer {layer!r} is {read.layout}"
        elif len(shape) == 2:
            if token >= shape[1]:
                bad = f"token {token} is out of range: layer {layer!r} has {shape[1]} tokens"
        else:
            patch = token - read.layout.prefix
            if not 0 <= patch < shape[1] * shape[2]:
                bad = (f"token {token} is not a patch token of layer {layer!r} ({read.layout}); read the prefix "
                       "tokens with --include-prefix")
            else:
                where = divmod(patch, shape[2])
    if bad:
        raise UsageError(f"unit {defn.name}={defn.text}: {bad}", "unit")
    return layer, channel, tuple(int(v) for v in where)


def bind(defn: UnitDefinition, reads: Mapping[str, LayerRead]) -> DerivedGroup:
    """The group of ``defn`` on the layers as the model reads them (a term or matrix that does not fit them: a
    one-line UsageError naming the flag)."""
    mine = {layer: reads[layer] for layer in defn.layers}
    if defn.source == "directions":
        read = mine[defn.layer]
        if defn.matrix.shape[1] != read.shape[0]:
            raise UsageError(f"directions {defn.name}={defn.text}: the matrix has {defn.matrix.shape[1]} columns, "
                             f"layer {defn.layer!r} has {read.shape[0]} channels", "directions")
        definition = {"name": defn.name, "source": "directions", "layer": defn.layer, "file": defn.file,
                      "sha256": defn.sha256, "units": int(defn.matrix.shape[0]), "product": "dot"}
        return DerivedGroup(defn.name, read.kind, mine, definition, defn.layer, defn.matrix)
    terms: Dict[Term, float] = {}
    for term, coef in defn.terms.items():
        placed = _placed_term(defn, term, mine[term[0]])
        terms[placed] = terms.get(placed, 0.0) + coef
    definition = {"name": defn.name, "source": "unit", "expression": defn.text,
                  "terms": [[layer, channel, list(where), coef] for (layer, channel, where), coef in terms.items()]}
    if defn.is_virtual_channel:
        layer = defn.layers[0]
        weights = np.zeros((1, mine[layer].shape[0]), np.float32)
        for (_, channel, _), coef in terms.items():
            weights[0, channel] = coef
        definition.update(mode="virtual_channel", layer=layer, units=1)
        return DerivedGroup(defn.name, mine[layer].kind, mine, definition, layer, weights)
    definition.update(mode="per_image", units=1)
    return DerivedGroup(defn.name, "fc", mine, definition, terms=terms)


def read_layers(model: nn.Module, layers: Sequence[str], declared: Mapping[str, object], include_prefix: bool,
                flag: str = "unit") -> Dict[str, LayerRead]:
    """{layer: LayerRead} for ``layers`` of ``model`` (the layouts find_max_acts reads them with); an unknown layer
    or one without output is a one-line UsageError naming ``flag``."""
    shapes, layouts = survey_layers(model, tuple(model.input_contract.size), dict(declared), "size")
    names = named_layers(model)
    reads = {}
    for layer in layers:
        if layer not in names or layer not in shapes:
            raise UsageError(f"{flag}: {layer!r} is not a layer of the model that produces a tensor (see "
                             "--list-layers)", flag)
        layout = with_include_prefix(layouts[layer], include_prefix)
        reads[layer] = LayerRead(layout, kind_of(layout), tuple(canonical_shape(shapes[layer], layout, layer)))
    return reads


def plan_derived(model: nn.Module, definitions: Sequence[UnitDefinition], declared: Mapping[str, object],
                 include_prefix: bool) -> Tuple[Dict[str, DerivedGroup], Dict[str, LayerRead]]:
    """({NAME: DerivedGroup}, {layer: LayerRead} of every layer they read). A NAME that is a layer of the model or
    named twice is a one-line UsageError."""
    names = named_layers(model)
    seen = set()
    groups, reads = {}, {}
    for defn in definitions:
        flag = "unit" if defn.source == "unit" else "directions"
        if defn.name in names or defn.name == "input":
            raise UsageError(f"{flag} {defn.name}: NAME is a layer of the model; choose another name", flag)
        if defn.name in seen:
            raise UsageError(f"{flag} {defn.name}: NAME is given twice; each group needs its own", flag)
        seen.add(defn.name)
        mine = read_layers(model, defn.layers, declared, include_prefix, flag)
        reads.update(mine)
        groups[defn.name] = bind(defn, mine)
    return groups, reads


def group_arrays(groups: Mapping[str, DerivedGroup]) -> Dict[str, np.ndarray]:
    """What the tracker file keeps beside the top N: ``weights/NAME`` (K, C) float32 of each virtual-channel
    group."""
    return {f"weights/{name}": g.weights.astype(np.float32) for name, g in groups.items() if g.weights is not None}


# ---------------------------------------------------------------------------------------------------- from the file


def recorded_definition(meta: dict, name: str) -> Optional[dict]:
    """The definition the tracker file's meta records for group ``name`` (None: a layer)."""
    for entry in meta.get("derived", []) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry
    return None


def load_group(nmt: str, meta: dict, definition: dict, model: nn.Module, declared: Mapping[str, object]
               ) -> DerivedGroup:
    """The group a tracker file recorded, bound to ``model`` (its matrix from ``weights/NAME``; the layers' layouts
    must read as the file recorded them). Any mismatch is a one-line UsageError."""
    name = definition["name"]
    try:
        if definition["source"] == "directions" or definition.get("mode") == "virtual_channel":
            with np.load(nmt, allow_pickle=False) as npz:
                weights = np.asarray(npz[f"weights/{name}"], np.float32)
            layers = (definition["layer"],)
        else:
            weights = None
            terms = {(t[0], int(t[1]), tuple(int(v) for v in t[2])): float(t[3]) for t in definition["terms"]}
            layers = tuple(dict.fromkeys(t[0] for t in terms))
    except (KeyError, TypeError, ValueError, IndexError, OSError, zipfile.BadZipFile) as exc:
        raise UsageError(f"nmt (the tracker file) {nmt}: group {name!r} is damaged ({' '.join(str(exc).split())})"
                         ) from None
    reads = read_layers(model, layers, declared, bool(meta.get("include_prefix", False)), "layer")
    for layer, read in reads.items():
        recorded = meta.get("layouts", {}).get(layer)
        if recorded is not None and recorded != str(read.layout):
            raise UsageError(f"layer {layer!r} (read by {name!r}) reads as {read.layout} here, but the tracker file "
                             f"{nmt} recorded {recorded}: declare it with layouts", "layouts")
    if weights is not None:
        layer = layers[0]
        if weights.ndim != 2 or weights.shape[1] != reads[layer].shape[0]:
            raise UsageError(f"group {name!r}: the tracker file's matrix is {weights.shape}, layer {layer!r} has "
                             f"{reads[layer].shape[0]} channels in this model: give the model find_max_acts ran",
                             "model")
        return DerivedGroup(name, reads[layer].kind, reads, definition, layer, weights)
    return DerivedGroup(name, "fc", reads, definition, terms=terms)


def canonical_outputs(model: nn.Module, layouts: Mapping[str, Layout], x: torch.Tensor) -> Dict[str, torch.Tensor]:
    """{layer: canonical output (B, C, ...)} of x, without gradients, the forward stopped after the last layer."""
    capture = LayerCapture(model, list(layouts), stop_when_complete=True)
    with torch.no_grad():
        forward_captured(model, capture, x)
    return {layer: canonical(capture.outputs[layer], layout, layer) for layer, layout in layouts.items()}


def group_gradient(model: nn.Module, group: DerivedGroup, x: torch.Tensor, unit: int, yx: Tuple[int, int],
                   deconv: bool) -> Tuple[np.ndarray, float]:
    """(d unit / d x (3, H, W) float32, the unit's value) of a derived unit in image x (1, 3, H, W): backprop or
    deconv from its seeds (``DerivedGroup.seeds``; a per-image sum reads its terms' positions in a forward pass)."""
    if group.weights is not None:
        outputs = {group.layer: torch.zeros(group.reads[group.layer].shape, device=x.device)}
    else:
        outputs = canonical_outputs(model, {layer: read.layout for layer, read in group.reads.items()}, x)
        outputs = {layer: out[0] for layer, out in outputs.items()}
    seeds = group.seeds(outputs, unit, yx)
    return seeded_input_gradient(model, x, seeds, {layer: read.layout for layer, read in group.reads.items()},
                                 deconv)


def derived_top(model: nn.Module, group: DerivedGroup, top: TopN) -> Tuple[TopN, Optional[Layout]]:
    """(``top`` with the group's source for ``unit_pages``, the layout of the layer whose field crops it (None: a
    per-image sum, cropped to the whole image))."""
    if top.values.shape[0] != group.units:
        raise UsageError(f"group {group.name!r}: the tracker file holds {top.values.shape[0]} units, its definition "
                         f"{group.units}: a damaged tracker file", "layer")
    source = DerivedSource(group.layer, lambda x, unit, yx, deconv: group_gradient(model, group, x, unit, yx, deconv))
    layout = group.reads[group.layer].layout if group.layer is not None else None
    return dataclasses.replace(top, derived=source), layout


def describe(groups: Mapping[str, DerivedGroup]) -> list:
    """meta["derived"]: each group's definition (JSON), in order."""
    return [json.loads(json.dumps(g.definition)) for g in groups.values()]
