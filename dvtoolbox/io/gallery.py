"""``index.html``: a browsable page of every unit optimized into one folder.

Source of truth: the folder's ``*info.txt`` files (every run, single or many-unit, writes one per unit, atomically,
as plain text: no pickle is loaded; visualize.py --units writes one per unit too, with a ``VisualizeUnit`` section,
whose cell shows the unit's image at the last step and its value there instead of best_X and best obj). Each ``<prefix>info.txt`` is one cell of the grid, whatever the prefix, layer or
seed, so a folder holding several runs shows all of them. A cell shows the ``<prefix>best_X.jpg`` thumbnail (an
``<img>`` with its width and height), the layer, unit, seed, best obj (with its iteration) and the meta result, and
links to ``best_X.jpg``, ``best_Xpm.jpg``, ``last_X.jpg``, ``last_Xpm.jpg``, ``info.txt`` and ``curve.png`` (only those
that exist). Sort buttons order the grid by unit, or by best obj descending / ascending, with a few lines of inline
JavaScript; the page also honours ``index.html#sort=obj-desc`` (or ``?sort=``; keys: ``unit``, ``obj-desc``,
``obj-asc``). No external resource is used; every text is HTML-escaped and every link URL-quoted.

The page is a view of the folder, rebuilt rather than kept: it holds no timestamp, and is rewritten only when its
text changes. An ``index.html`` that this module did not write (no ``generator`` meta tag) is never overwritten
without ``brave``.

With ``exemplars`` (crop_max_patches.py's ``outdir/<layer>`` folder, read by ``gallery_exemplars``), each cell of that
layer also shows its unit's natural exemplars: the ``maxim_%03d.png`` crops as thumbnails in rank order, each with
its value from the unit's info.txt and links to its deconv / backprop images that exist, and, where
crop_max_patches.py wrote it (``--do-histogram``), the unit's activation histogram over the dataset as inline SVG
(``gallery_histogram``); a unit whose exemplars exist but which has no synthetic image gets a cell of its own
(exemplars only). Their paths are relative to index.html. The exemplars' layer (the folder's name) must be one of
the results' layers.
"""

from __future__ import annotations

import glob
import html
import logging
import math
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple
from urllib.parse import quote

from dvtoolbox.errors import UsageError
from dvtoolbox.io.atomic import write_text_atomic
from dvtoolbox.io.gallery_exemplars import RANK_FILES, ExemplarRank, ExemplarUnit, read_exemplars
from dvtoolbox.io.gallery_histogram import histogram_html
from dvtoolbox.io.images import load_image_rgb

log = logging.getLogger(__name__)

INDEX_NAME = "index.html"
INFO_SUFFIX = "info.txt"
VISUALIZE_SECTION = "VisualizeUnit"  # the section of a visualize.py --units unit's info.txt
GENERATOR = "dvtoolbox.io.gallery"
THUMB_PX = 160
LINKS = (("best_X", "best_X.jpg"), ("best_Xpm", "best_Xpm.jpg"), ("last_X", "last_X.jpg"),
         ("last_Xpm", "last_Xpm.jpg"), ("info.txt", "info.txt"), ("curve", "curve.png"))
SORT_KEYS = ("unit", "obj-desc", "obj-asc")
EXEMPLAR_PX = 50


@dataclass
class Exemplars:
    """A layer's natural exemplars as the page links them: ``href`` the exemplars folder relative to index.html."""

    layer: str
    href: str
    units: Dict[int, ExemplarUnit]


@dataclass
class UnitCell:
    """One unit's result in a folder, read from its ``<prefix>info.txt``.

    prefix: the file-name prefix inside the folder (e.g. 'opt_fc8_0130_0_'); best_obj: None when the run
    recorded none; files: link label -> file name, for the files that exist; thumb_size: (width, height) of
    best_X.jpg in pixels, None when it is missing."""

    prefix: str
    layer: str
    channel: int
    spatial: str
    seed: int
    best_obj: Optional[float]
    best_ii: str
    meta_result: str
    files: Dict[str, str] = field(default_factory=dict)
    thumb_size: Optional[Tuple[int, int]] = None
    thumb: str = "best_X"            # the files' label of the thumbnail
    obj_label: str = "best obj"      # visualize.py's units: "value", at "step T"
    when: str = ""                   # "" -> "iteration <best_ii>"

    @property
    def sort_key(self) -> Tuple:
        return (self.layer, self.channel, self.spatial, self.seed, self.prefix)


def parse_info_text(text: str) -> Dict[str, Dict[str, str]]:
    """The sections of an info.txt ('FindParams', 'FindResults'), each as {field: value text}."""
    sections: Dict[str, Dict[str, str]] = {}
    current = None
    for line in text.splitlines():
        header = re.fullmatch(r"(\w+):\s*", line)
        item = re.fullmatch(r"\s+(\w+): ?(.*)", line)
        if header:
            current = sections.setdefault(header.group(1), {})
        elif item and current is not None:
            current[item.group(1)] = item.group(2)
    return sections


def read_cell(info_path: str) -> UnitCell:
    """The cell of one ``<prefix>info.txt`` (optimize_image.py's, or a unit's of visualize.py --units); any other
    info.txt raises UsageError."""
    try:
        with open(info_path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {info_path}: {getattr(exc, 'strerror', None) or exc}") from None
    sections = parse_info_text(text)
    if VISUALIZE_SECTION in sections:
        return _visualize_cell(info_path, sections[VISUALIZE_SECTION])
    params, results = sections.get("FindParams", {}), sections.get("FindResults", {})
    try:
        layer, channel, seed = params["push_layer"], int(params["push_channel"]), int(params["rand_seed"])
    except (KeyError, ValueError):
        raise UsageError(f"{info_path} is not an optimize_image.py info.txt (no push_layer / push_channel / "
                         "rand_seed)") from None
    folder, name = os.path.split(info_path)
    prefix = name[:-len(INFO_SUFFIX)]
    files = {label: prefix + suffix for label, suffix in LINKS if os.path.isfile(os.path.join(folder, prefix + suffix))}
    thumb = _image_size(folder, files.get("best_X"))
    return UnitCell(prefix=prefix, layer=layer, channel=channel, spatial=params.get("push_spatial", ""), seed=seed,
                    best_obj=_float_or_none(results.get("best_obj")), best_ii=results.get("best_ii", "None"),
                    meta_result=results.get("meta_result", "None"), files=files, thumb_size=thumb)


def _visualize_cell(info_path: str, unit: Dict[str, str]) -> UnitCell:
    """The cell of a visualize.py --units unit: its image at the last step as the thumbnail, its value there."""
    try:
        layer, channel, seed, step = unit["layer"], int(unit["unit"]), int(unit["seed"]), int(unit["step"])
    except (KeyError, ValueError):
        raise UsageError(f"{info_path}: its {VISUALIZE_SECTION} section lacks layer / unit / seed / step") from None
    folder, name = os.path.split(info_path)
    prefix = name[:-len(INFO_SUFFIX)]
    pattern = re.compile(re.escape(prefix) + r"step(\d+)_0\.png")
    matches = sorted((int(m.group(1)), m.group(0)) for m in map(pattern.fullmatch, os.listdir(folder or ".")) if m)
    files = {f"step {t}": f for t, f in matches}
    last = files.get(f"step {step}")
    extras = [("transparency", f"{last[:-len('.png')]}_transparency.png" if last else ""),
              ("info.txt", name), ("config", prefix + "config.yaml")]
    files.update({label: f for label, f in extras if f and os.path.isfile(os.path.join(folder, f))})
    thumb = _image_size(folder, last)
    return UnitCell(prefix=prefix, layer=layer, channel=channel, spatial="", seed=seed,
                    best_obj=_float_or_none(unit.get("value")), best_ii=str(step),
                    meta_result=f"recipe {unit.get('recipe', '?')}", files=files, thumb_size=thumb,
                    thumb=f"step {step}", obj_label="value", when=f"step {step}")


def _image_size(folder: str, name: Optional[str]) -> Optional[Tuple[int, int]]:
    """(width, height) of the image ``name`` in ``folder``, None when there is none."""
    if name is None:
        return None
    img = load_image_rgb(os.path.join(folder, name))
    return img.shape[1], img.shape[0]


def scan_folder(folder: str) -> List[UnitCell]:
    """Every unit of the folder (one per ``*info.txt``), ordered by layer, unit, spatial position, seed."""
    if not os.path.isdir(folder):
        raise UsageError(f"results folder {folder!r} does not exist or is not a folder")
    paths = sorted(glob.glob(os.path.join(glob.escape(folder), "*" + INFO_SUFFIX)))
    paths = [p for p in paths if not os.path.basename(p).startswith(".") and os.path.isfile(p)]
    if not paths:
        raise UsageError(f"no results in {folder!r}: no *info.txt file of optimize_image.py or visualize.py --units "
                         "there")
    return sorted((read_cell(p) for p in paths), key=lambda c: c.sort_key)


def gallery_html(cells: List[UnitCell], title: str, extra_links: Tuple[str, ...] = (),
                 exemplars: Optional[Exemplars] = None) -> str:
    """The page's text: a grid of ``cells`` in the given order (that order is the 'unit' sort), with the units of
    ``exemplars`` that have no cell placed among them by unit."""
    esc = html.escape
    layers = sorted({c.layer for c in cells})
    head = (f"{len(cells)} unit{'s' if len(cells) != 1 else ''} of layer{'s' if len(layers) != 1 else ''} "
            f"{', '.join(layers)}")
    if exemplars is not None:
        head += f"; natural exemplars of {exemplars.layer} units from {exemplars.href}/"
    links = "".join(f' &middot; <a href="{esc(quote(name))}">{esc(name)}</a>' for name in extra_links)
    value = "value" if cells and all(c.obj_label == "value" for c in cells) else "best obj"
    buttons = "".join(f'<button type="button" data-sort="{key}">{label}</button>'
                      for key, label in zip(SORT_KEYS, ("unit", f"{value} &darr;", f"{value} &uarr;")))
    body = "\n".join(render(i) for i, render in enumerate(_cell_renderers(cells, exemplars)))
    return _PAGE.format(generator=GENERATOR, title=esc(title), head=esc(head), links=links, buttons=buttons,
                        cells=body, script=_SCRIPT)


def load_exemplars(folder: str, exemplars_dir: str, cells: List[UnitCell]) -> Exemplars:
    """The exemplars of ``exemplars_dir`` for the page in ``folder``; UsageError when their layer is none of the
    cells' layers."""
    layer, units = read_exemplars(exemplars_dir)
    layers = sorted({c.layer for c in cells})
    if layer not in layers:
        raise UsageError(f"exemplars folder {exemplars_dir!r} is of layer {layer!r} but {folder!r} holds layer(s) "
                         f"{', '.join(layers)}; give crop_max_patches.py's OUTDIR/<layer> of the same layer",
                         "exemplars")
    href = os.path.relpath(os.path.abspath(exemplars_dir), os.path.abspath(folder)).replace(os.sep, "/")
    return Exemplars(layer=layer, href=href, units=units)


def write_gallery(folder: str, brave: bool = False, exemplars: Optional[str] = None) -> str:
    """Build ``<folder>/index.html`` from the folder's results (and the natural exemplars of crop_max_patches.py's
    ``exemplars`` folder, ``outdir/<layer>``); returns its path. Rewrites it only when its text changes; refuses
    (UsageError) to replace an index.html that this module did not write, unless ``brave``."""
    cells = scan_folder(folder)
    found = None if exemplars is None else load_exemplars(folder, exemplars, cells)
    path = os.path.join(folder, INDEX_NAME)
    summaries = tuple(sorted(os.path.basename(p) for p in glob.glob(os.path.join(glob.escape(folder),
                                                                                 "*_summary.json"))))
    name = os.path.basename(os.path.normpath(os.path.abspath(folder)))
    text = gallery_html(cells, f"dvtoolbox results: {name}", summaries, found)
    old = _read_text(path)
    if old == text:
        log.info("%s is up to date", path)
        return path
    check_index(folder, brave)
    write_text_atomic(path, text)
    log.info("wrote %s (%d units)", path, len(cells))
    return path


def check_index(folder: str, brave: bool = False) -> None:
    """A UsageError when ``<folder>/index.html`` exists and this module did not write it (unless ``brave``): the
    check ``write_gallery`` makes, for a run to make before any work."""
    path = os.path.join(folder, INDEX_NAME)
    old = _read_text(path)
    if old is not None and f'<meta name="generator" content="{GENERATOR}">' not in old and not brave:
        raise UsageError(f"cowardly refusing to overwrite {path}, which dvtoolbox did not write; allow it with "
                         "brave", "brave")


def _cell_renderers(cells: List[UnitCell], exemplars: Optional[Exemplars]) -> List:
    """One function order -> cell HTML per cell, in page order: the synthetic cells (with their unit's exemplars)
    and the exemplars-only units, by (layer, unit)."""
    def shown(cell):
        if exemplars is None or cell.layer != exemplars.layer:
            return None
        return exemplars.units.get(cell.channel)
    href = "" if exemplars is None else exemplars.href
    entries = [(c.sort_key, lambda i, c=c: _cell_html(i, c, shown(c), href)) for c in cells]
    if exemplars is not None:
        have = {c.channel for c in cells if c.layer == exemplars.layer}
        entries += [((exemplars.layer, unit, "", -1, ""), lambda i, u=unit: _exemplars_only_html(i, exemplars, u))
                    for unit in exemplars.units if unit not in have]
    return [render for _, render in sorted(entries, key=lambda e: e[0])]


def _cell_html(order: int, cell: UnitCell, exemplars: Optional[ExemplarUnit] = None, href: str = "") -> str:
    esc = html.escape
    name = f"{cell.layer} unit {cell.channel}"
    if cell.spatial not in ("", "(0, 0)"):
        name += f" at {cell.spatial}"
    best = cell.files.get(cell.thumb)
    thumb = _thumbnail_html(esc(quote(best)) if best else None, cell.thumb_size, THUMB_PX, f"{name}, {cell.thumb}",
                            "no best_X.jpg" if cell.thumb == "best_X" else f"no {cell.thumb} image")
    obj = "none" if cell.best_obj is None else f"{cell.best_obj:g}"
    meta = cell.meta_result.replace("Metaresult: ", "")
    meta_class = "ok" if meta == "majority success" else "fail" if cell.thumb == "best_X" else "recipe"
    links = " ".join(f'<a href="{esc(quote(fname))}">{esc(label)}</a>' for label, fname in cell.files.items())
    data_obj = "" if cell.best_obj is None else repr(cell.best_obj)
    return (f'<div class="cell" id="{esc(cell.prefix)}" data-order="{order}" data-obj="{esc(data_obj)}" '
            f'data-layer="{esc(cell.layer)}" data-unit="{cell.channel}" data-seed="{cell.seed}">{thumb}'
            f'<div class="name">{esc(name)}, seed {cell.seed}</div>'
            f'<div class="obj">{esc(cell.obj_label)} <b>{esc(obj)}</b> '
            f'({esc(cell.when or "iteration " + cell.best_ii)})</div>'
            f'<div class="meta {meta_class}">{esc(meta)}</div><div class="links">{links}</div>'
            f'{"" if exemplars is None else _exemplars_html(exemplars, name, href)}</div>')


def _thumbnail_html(url: Optional[str], size: Optional[Tuple[int, int]], box_px: int, alt: str,
                    missing: str) -> str:
    """An image scaled to fit ``box_px`` (its larger side), linked to itself (``url``: quoted and escaped), or a box
    saying ``missing`` when there is none (url None); enlarged images are drawn pixelated."""
    if url is None:
        return f'<div class="missing" style="width:{box_px}px;height:{box_px}px">{missing}</div>'
    width, height = size
    scale = box_px / max(width, height)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    pixelated = ' class="px"' if scale > 1 else ""
    return (f'<a href="{url}"><img src="{url}" width="{w}" height="{h}"{pixelated} alt="{html.escape(alt)}"></a>')


def _exemplars_only_html(order: int, exemplars: Exemplars, unit: int) -> str:
    esc = html.escape
    name = f"{exemplars.layer} unit {unit}"
    return (f'<div class="cell exonly" id="exemplars_{esc(exemplars.layer)}_{unit:04d}" data-order="{order}" '
            f'data-obj="" data-layer="{esc(exemplars.layer)}" data-unit="{unit}" data-seed="">'
            f'<div class="name">{esc(name)}: no synthetic image</div>'
            f'{_exemplars_html(exemplars.units[unit], name, exemplars.href)}</div>')


def _exemplars_html(unit: ExemplarUnit, name: str, href: str) -> str:
    """A unit's natural exemplars: one figure per rank (crop thumbnail, value, links), rank 0 first."""
    figures = "".join(_rank_html(rank, name, href) for rank in unit.ranks)
    histogram = ("" if unit.histogram is None else
                 histogram_html(unit.histogram, [r.value for r in unit.ranks if r.value is not None], name, href))
    return (f'<div class="ex" data-unit="{unit.unit}"><div class="exlabel">natural exemplars'
            f'{"" if figures else ": none"}</div>{figures}{histogram}</div>')


def _rank_html(rank: ExemplarRank, name: str, href: str) -> str:
    esc = html.escape

    def url(path):
        return esc(quote(f"{href}/{path}"))
    thumb = _thumbnail_html(url(rank.files["maxim"]) if rank.size is not None else None, rank.size, EXEMPLAR_PX,
                            f"{name}, exemplar {rank.rank}", "no crop")
    links = " ".join(f'<a href="{url(rank.files[prefix])}">{esc(label)}</a>' for prefix, label in RANK_FILES[1:]
                     if prefix in rank.files)
    title = f' title="{esc(rank.image)}"' if rank.image else ""
    data_value = "" if rank.value is None else repr(rank.value)
    return (f'<figure class="exm" data-rank="{rank.rank}" data-value="{data_value}"{title}>{thumb}'
            f'<figcaption>#{rank.rank} <b>{esc(rank.value_text)}</b> {links}</figcaption></figure>')


def _float_or_none(text: Optional[str]) -> Optional[float]:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _read_text(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None


_SCRIPT = """(function () {
  var grid = document.getElementById("grid");
  function obj(c) { return c.dataset.obj === "" ? NaN : parseFloat(c.dataset.obj); }
  function byObj(sign) {
    return function (a, b) {
      var x = obj(a), y = obj(b);
      if (isNaN(x) || isNaN(y)) { return isNaN(x) - isNaN(y) || a.dataset.order - b.dataset.order; }
      return sign * (x - y) || a.dataset.order - b.dataset.order;
    };
  }
  var orders = {"unit": function (a, b) { return a.dataset.order - b.dataset.order; },
                "obj-desc": byObj(-1), "obj-asc": byObj(1)};
  function sortBy(key) {
    if (!orders[key]) { key = "unit"; }
    Array.prototype.slice.call(grid.children).sort(orders[key]).forEach(function (c) { grid.appendChild(c); });
    document.querySelectorAll("button[data-sort]").forEach(function (b) {
      b.className = b.dataset.sort === key ? "on" : ""; });
    document.body.setAttribute("data-sorted", key);
  }
  function requested() {
    var m = /(?:^|[#?&])sort=([\\w-]+)/.exec(location.hash + "&" + location.search);
    return m ? m[1] : "unit";
  }
  document.querySelectorAll("button[data-sort]").forEach(function (b) {
    b.addEventListener("click", function () { location.hash = "sort=" + b.dataset.sort; });
  });
  window.addEventListener("hashchange", function () { sortBy(requested()); });
  sortBy(requested());
})();"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="generator" content="{generator}">
<title>{title}</title>
<style>
body {{ font: 13px sans-serif; margin: 12px; background: #fff; color: #222; }}
h1 {{ font-size: 17px; margin: 0 0 4px; }}
#controls {{ margin: 8px 0; }}
#controls button {{ margin-right: 4px; }}
#controls button.on {{ font-weight: bold; }}
#grid {{ display: flex; flex-wrap: wrap; gap: 10px; }}
.cell {{ width: 172px; padding: 5px; border: 1px solid #ccc; border-radius: 3px; background: #f7f7f7; }}
.cell img {{ display: block; margin: 0 auto 4px; }}
.cell img.px {{ image-rendering: pixelated; }}
.missing {{ margin: 0 auto 4px; background: #ddd; color: #666; text-align: center; }}
.meta.ok {{ color: #1a7f37; }}
.meta.fail {{ color: #b35900; }}
.links a {{ margin-right: 3px; }}
.ex {{ margin-top: 4px; border-top: 1px solid #ccc; padding-top: 3px; display: flex; flex-wrap: wrap; gap: 2px; }}
.exlabel {{ width: 100%; }}
.exm {{ width: 54px; margin: 0; font-size: 10px; text-align: center; overflow-wrap: anywhere; }}
.exm img {{ margin: 0 auto; }}
.hist {{ width: 100%; margin: 2px 0 0; font-size: 10px; }}
.hist svg {{ display: block; margin: 0 auto; background: #fff; }}
</style>
</head>
<body>
<h1>{title}</h1>
<div>{head}{links}</div>
<div id="controls">Sort by: {buttons}</div>
<div id="grid">
{cells}
</div>
<script>
{script}
</script>
</body>
</html>
"""
