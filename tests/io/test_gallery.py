"""index.html of a results folder: what run_job writes, the cells it holds, escaping, rebuilding, bad input."""

import html
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from dvtoolbox.cli.gallery import main as gallery_main
from dvtoolbox.cli.optimize_image import main as optimize_main
from dvtoolbox.errors import UsageError
from dvtoolbox.io.gallery import parse_info_text, scan_folder, write_gallery
from tests.io.gallery_results import EXEMPLAR_UNITS, N_TOP, ROW1, UNITS, make_exemplars, make_results

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("gallery")
    assert make_results(path) == 0
    return path


def cells_of(text):
    return re.findall(r'<div class="cell" id="([^"]*)" data-order="(\d+)" data-obj="([^"]*)"', text)


def test_a_many_unit_run_writes_index_html_with_every_unit(folder):
    text = (folder / "index.html").read_text()
    summary = json.loads((folder / "opt_fc8_summary.json").read_text())
    cells = cells_of(text)
    assert [c[0] for c in cells] == [f"opt_fc8_{u:04d}_0_" for u in UNITS]
    for unit, (_, order, obj) in zip(UNITS, cells):
        entry = summary["units"][str(unit)]
        assert int(order) == unit
        assert float(obj) == pytest.approx(entry["best_obj"], rel=1e-5)  # info.txt keeps %g digits
        prefix = f"opt_fc8_{unit:04d}_0_"
        for suffix in ("best_X.jpg", "best_Xpm.jpg", "last_X.jpg", "last_Xpm.jpg", "info.txt", "curve.png"):
            assert f'href="{prefix}{suffix}"' in text
            assert (folder / (prefix + suffix)).is_file()
        assert f'<img src="{prefix}best_X.jpg" width="160" height="160" class="px"' in text
        assert html.escape(entry["meta_result"].replace("Metaresult: ", "")) in text
    assert '<meta name="generator" content="dvtoolbox.io.gallery">' in text
    assert 'href="opt_fc8_summary.json"' in text
    assert not re.search(r'(src|href)="(https?:)?//', text)  # no external resources


def test_a_single_run_writes_no_index_but_the_cli_builds_one(tmp_path, capsys):
    argv = ["--model", "tiny_test", "--max-iter", "3", "--push-channel", "2", "--output-prefix",
            str(tmp_path / "opt"), *ROW1]
    assert optimize_main(argv, settings_dirs=[]) == 0
    assert not (tmp_path / "index.html").exists()
    assert gallery_main([str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip().endswith("index.html")
    assert [c[0] for c in cells_of((tmp_path / "index.html").read_text())] == ["opt_fc8_0002_0_"]


def test_rebuilding_an_unchanged_folder_does_not_rewrite_the_page(folder):
    path = folder / "index.html"
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    assert write_gallery(str(folder)) == str(path)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_a_foreign_index_html_is_kept_without_brave(tmp_path, folder, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    (copy / "index.html").write_text("<html>my own page</html>")
    assert gallery_main([str(copy)]) == 2
    err = capsys.readouterr().err
    assert "cowardly refusing to overwrite" in err and len(err.strip().splitlines()) == 1
    assert (copy / "index.html").read_text() == "<html>my own page</html>"
    assert gallery_main([str(copy), "--brave"]) == 0
    assert len(cells_of((copy / "index.html").read_text())) == len(UNITS)


def test_every_text_and_link_is_escaped(tmp_path, folder):
    odd = tmp_path / "odd"
    odd.mkdir()
    src = "opt_fc8_0001_0_"
    name = 'a&b"<i>x_'
    for suffix in ("info.txt", "best_X.jpg", "curve.png"):
        shutil.copy(folder / (src + suffix), odd / (name + suffix))
    info = (odd / (name + "info.txt")).read_text().replace("push_layer: fc8", "push_layer: <b>fc8</b>&")
    (odd / (name + "info.txt")).write_text(info)
    text = (Path(write_gallery(str(odd)))).read_text()
    assert "<i>x" not in text and "<b>fc8" not in text
    assert 'id="a&amp;b&quot;&lt;i&gt;x_"' in text
    assert 'href="a%26b%22%3Ci%3Ex_best_X.jpg"' in text and 'href="a%26b%22%3Ci%3Ex_curve.png"' in text
    assert "&lt;b&gt;fc8&lt;/b&gt;&amp; unit 1" in text
    assert "best_Xpm" not in text  # only existing files are linked


def test_parse_info_text_reads_both_sections_of_the_original_layout():
    sections = parse_info_text((REPO / "doc" / "opt_fc8_0130_0_info.txt").read_text())
    assert sections["FindParams"]["push_channel"] == "130" and sections["FindParams"]["lr_params"] == "{'lr': 100.0}"
    assert sections["FindResults"]["best_obj"] == "28.7888"
    assert sections["FindResults"]["meta_result"] == "Metaresult: majority success"
    assert len(sections["FindParams"]) == 17 and len(sections["FindResults"]) == 18


@pytest.mark.parametrize("make, expected", [
    (lambda p: p, "no results in"),
    (lambda p: p / "missing", "does not exist or is not a folder"),
])
def test_a_folder_without_results_is_a_one_line_usage_error(tmp_path, capsys, make, expected):
    assert gallery_main([str(make(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1
    with pytest.raises(UsageError, match=expected):
        scan_folder(str(make(tmp_path)))
    assert not (tmp_path / "index.html").exists()


def test_an_info_txt_of_something_else_is_a_usage_error(tmp_path):
    (tmp_path / "notes_info.txt").write_text("hello\n")
    with pytest.raises(UsageError, match="is not an optimize_image.py info.txt"):
        scan_folder(str(tmp_path))


def test_table1_layer_script_runs_the_rows_of_table1_sh():
    def rows(path, pattern):
        text = (REPO / "scripts" / path).read_text()
        return {m.group(1): " ".join(m.group(2).split()) for m in re.finditer(pattern, text, re.M)}
    table1 = rows("table1.sh", r"^run (\d) (.*)$")
    layer = rows("table1_layer.sh", r"^  (\d)\) flags=\((.*)\) ;;$")
    assert sorted(table1) == sorted(layer) == ["1", "2", "3", "4"]
    assert table1 == layer


def test_a_damaged_best_x_image_is_a_one_line_usage_error(tmp_path, folder, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    (copy / "index.html").unlink(missing_ok=True)
    best = sorted(copy.glob("*best_X.jpg"))[0]
    best.write_bytes(best.read_bytes()[:200])                  # cut short, as by an interrupted copy
    assert gallery_main([str(copy)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"image {str(best)!r} is truncated or damaged" in err, err
    assert not (copy / "index.html").exists()


def _copy_with(source, target, name, content):
    """``source``'s results copied to ``target``, with ``name`` made: bytes (a file) or None (a folder)."""
    shutil.copytree(source, target)
    path = target / name
    if path.is_file():
        path.unlink()
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    return target


# name -> (the command line after the program, given the tmp folder and the results folder; the line's text)
BAD_GALLERY_INPUTS = {
    "missing folder": (lambda tmp, results: [str(tmp / "missing")], "does not exist or is not a folder"),
    "a file, not a folder": (lambda tmp, results: [str(_file(tmp))], "does not exist or is not a folder"),
    "empty folder": (lambda tmp, results: [str(_empty(tmp))], "no results in"),
    "binary info.txt": (lambda tmp, results: [str(_copy_with(results, tmp / "r", "opt_fc8_0001_0_info.txt",
                                                             bytes(range(256))))],
                        "cannot read " + "{r}/opt_fc8_0001_0_info.txt: 'utf-8' codec can't decode"),
    "info.txt of something else": (lambda tmp, results: [str(_copy_with(results, tmp / "r", "notes_info.txt",
                                                                        b"hello\n"))],
                                   "{r}/notes_info.txt is not an optimize_image.py info.txt"),
    "info.txt with a non-number unit": (lambda tmp, results: [str(_copy_with(
        results, tmp / "r", "x_info.txt", b"FindParams:\n  push_layer: fc8\n  push_channel: one\n  rand_seed: 0\n"))],
        "{r}/x_info.txt is not an optimize_image.py info.txt"),
    "foreign index.html": (lambda tmp, results: [str(_copy_with(results, tmp / "r", "index.html", b"mine"))],
                           "cowardly refusing to overwrite {r}/index.html, which dvtoolbox did not write"),
    "index.html not text": (lambda tmp, results: [str(_copy_with(results, tmp / "r", "index.html", b"\xff\xfe"))],
                            "cannot read {r}/index.html"),
    "gui tile 0": (lambda tmp, results: [str(results), "--gui-dir", str(tmp / "gui"), "--gui-tile", "0"],
                   "--gui-tile must be an integer in [1, 8192], got 0"),
    "gui tile huge": (lambda tmp, results: [str(results), "--gui-dir", str(tmp / "gui"), "--gui-tile", "10**9"],
                      "argument --gui-tile: invalid int value"),
    "gui tile too large": (lambda tmp, results: [str(results), "--gui-dir", str(tmp / "gui"), "--gui-tile", "9000"],
                           "--gui-tile must be an integer in [1, 8192], got 9000"),
    "gui layer units 0": (lambda tmp, results: [str(results), "--gui-dir", str(tmp / "gui"), "--gui-layer-units",
                                                "0"], "--gui-layer-units must be an integer in [1, 4294836225], got 0"),
    "gui layer units huge": (lambda tmp, results: [str(results), "--gui-dir", str(tmp / "gui"), "--gui-layer-units",
                                                   "9" * 30], "--gui-layer-units must be an integer in [1, "),
    "gui layer units too many for a JPEG": (lambda tmp, results: [str(results), "--gui-dir", str(tmp / "gui"),
                                                                  "--gui-layer-units", "100000000"],
                                            "--gui-layer-units 100000000 with tiles of 8 pixels make whole_layer.jpg"),
    "gui layer units below the units": (lambda tmp, results: [str(results), "--gui-dir", str(tmp / "gui"),
                                                              "--gui-layer-units", "2"],
                                        "--gui-layer-units 2: the results have unit 3"),
}


@pytest.mark.parametrize("case", sorted(BAD_GALLERY_INPUTS))
def test_bad_gallery_input_is_one_line_exit_2_and_writes_nothing(folder, tmp_path, capsys, case):
    make, expected = BAD_GALLERY_INPUTS[case]
    argv = make(tmp_path, folder)
    before, results_before = _tree(tmp_path), _tree(folder)
    try:
        status = gallery_main(argv)
    except SystemExit as exc:  # argparse's own refusals (one line, status 2)
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m dvtoolbox.cli.gallery: error: ") and err.count("\n") == 1, err
    assert expected.format(r=tmp_path / "r") in err and "Traceback" not in err, err
    assert _tree(tmp_path) == before and _tree(folder) == results_before


def test_a_damaged_run_summary_in_the_folder_is_only_linked(folder, tmp_path, capsys):
    """The page is built from the info.txt files: a summary there, damaged or not, is a link, never read."""
    results = _copy_with(folder, tmp_path / "r", "opt_fc8_summary.json", bytes(range(256)))
    (results / "index.html").unlink()
    assert gallery_main([str(results)]) == 0
    text = (results / "index.html").read_text()
    assert '<a href="opt_fc8_summary.json">opt_fc8_summary.json</a>' in text and len(cells_of(text)) == len(UNITS)


def _file(tmp):
    (tmp / "afile").write_text("x")
    return tmp / "afile"


def _empty(tmp):
    (tmp / "empty").mkdir()
    return tmp / "empty"


def _tree(root):
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) if p.is_file() else None
            for p in Path(root).rglob("*")}


# --exemplars: crop_max_patches.py's crops beside the synthetic images

@pytest.fixture(scope="module")
def exemplified(tmp_path_factory):
    """(results folder of fc8 units 0..3, crop_max_patches' crops/fc8 of units 0..4, N 3), under one root."""
    root = tmp_path_factory.mktemp("exemplified")
    (root / "res").mkdir()
    assert make_results(root / "res") == 0
    return root / "res", make_exemplars(root)


def info_rows(unit_dir):
    """(value text, image name) per row of a crop_max_patches info.txt, restated: the header, then
    ``is_conv val image_idx image_class [i j] filename``."""
    lines = (unit_dir / "info.txt").read_text().splitlines()
    assert lines[0].startswith("# is_conv val")
    return [(line.split()[1], line.split()[-1]) for line in lines[1:]]


def figures_of(text, unit):
    """(rank, value text, maxim src or None, [link labels]) of each exemplar of ``unit``'s cell, in page order."""
    cell = re.search(rf'<div class="cell[^"]*" [^>]*data-unit="{unit}".*?</div></div>\n', text + "\n", re.S)
    figures = re.findall(r'<figure class="exm" data-rank="(\d+)"[^>]*>(.*?)</figure>', cell.group(0) if cell else "")
    out = []
    for rank, body in figures:
        src = re.search(r'<img src="([^"]*)"', body)
        value = re.search(r"<figcaption>#\d+ <b>([^<]*)</b>", body).group(1)
        out.append((int(rank), value, src and src.group(1), re.findall(r'<a href="[^"]*">([^<]*)</a>',
                                                                      body.split("<figcaption>")[1])))
    return out


def test_exemplars_show_each_units_crops_in_rank_order_with_their_values(exemplified, tmp_path):
    results, crops = exemplified
    copy = tmp_path / "res"
    shutil.copytree(results, copy)
    assert gallery_main([str(copy), "--exemplars", str(crops)]) == 0
    text = (copy / "index.html").read_text()
    assert [int(u) for u in re.findall(r'<div class="cell[^"]*" [^>]*data-unit="(\d+)"', text)] == list(
        EXEMPLAR_UNITS)
    assert re.search(r'<div class="cell exonly" [^>]*data-unit="4"', text)  # exemplars, no synthetic image
    assert "fc8 unit 4: no synthetic image" in text
    for unit in EXEMPLAR_UNITS:
        rows = info_rows(crops / f"unit_{unit:04d}")
        assert len(rows) == N_TOP
        figures = figures_of(text, unit)
        assert [(f[0], f[1]) for f in figures] == [(rank, value) for rank, (value, _) in enumerate(rows)]
        values = [float(v) for v, _ in rows]
        assert values == sorted(values, reverse=True) and len(set(values)) == N_TOP  # the order means something
        for rank, _, src, labels in figures:
            assert src == f"{os.path.relpath(crops, copy)}/unit_{unit:04d}/maxim_{rank:03d}.png"
            assert (copy / src).resolve() == (crops / f"unit_{unit:04d}" / f"maxim_{rank:03d}.png").resolve()
            assert labels == ["deconv", "backprop"]  # the norms were not asked of crop_max_patches
    assert not re.search(r'(src|href)="(https?:)?//', text)
    before = ((copy / "index.html").read_bytes(), (copy / "index.html").stat().st_mtime_ns)
    assert write_gallery(str(copy), exemplars=str(crops)) == str(copy / "index.html")
    assert ((copy / "index.html").read_bytes(), (copy / "index.html").stat().st_mtime_ns) == before
    assert gallery_main([str(copy)]) == 0  # without the flag: the page of the synthetic images alone
    assert "exemplar" not in (copy / "index.html").read_text()


def histogram_rows(unit_dir):
    """(lower, upper, count) per row of a crop_max_patches histogram.txt, restated: '#' header, then the rows."""
    lines = (unit_dir / "histogram.txt").read_text().splitlines()
    assert lines[0].startswith("# histogram layer=fc8")
    return [(float(a), float(b), int(c)) for a, b, c in (line.split() for line in lines[1:])]


def histogram_of(text, unit):
    """(the bars' (x, width, height, count), the ticks' (x, value), the caption's links) of ``unit``'s cell."""
    cell = re.search(rf'<div class="cell[^"]*" [^>]*data-unit="{unit}".*?</div></div>\n', text + "\n", re.S).group(0)
    figure = re.search(r'<figure class="hist".*?</figure>', cell, re.S)
    if figure is None:
        return None
    bars = [tuple(float(v) for v in m) for m in re.findall(
        r'<rect class="bar" x="([^"]+)" y="[^"]+" width="([^"]+)" height="([^"]+)" data-count="(\d+)">',
        figure.group(0))]
    ticks = [(float(x), float(v)) for x, v in re.findall(r'<line class="top" x1="([^"]+)"[^>]*data-value="([^"]+)"',
                                                           figure.group(0))]
    links = re.findall(r'<a href="([^"]*)">(txt|png)</a>', figure.group(0))
    return bars, ticks, links


def test_each_unit_shows_its_histogram_beside_its_crops(exemplified, tmp_path):
    results, crops = exemplified
    copy = tmp_path / "res"
    shutil.copytree(results, copy)
    assert gallery_main([str(copy), "--exemplars", str(crops)]) == 0
    text = (copy / "index.html").read_text()
    href = os.path.relpath(crops, copy)
    for unit in EXEMPLAR_UNITS:
        rows = histogram_rows(crops / f"unit_{unit:04d}")
        bars, ticks, links = histogram_of(text, unit)
        inner = rows[1:-1]
        assert [int(b[3]) for b in bars] == [c for _, _, c in inner] and sum(c for _, _, c in rows) == 5
        lo, hi = inner[0][0], inner[-1][1]
        tallest = max(c for _, _, c in inner)
        for (x, width, height, count), (a, b, _) in zip(bars, inner):   # x linear in the value, height in the count
            assert x == pytest.approx((a - lo) / (hi - lo) * 160, abs=0.006)
            assert height == pytest.approx(count / tallest * 46, abs=0.006)
        values = [float(v) for v, _ in info_rows(crops / f"unit_{unit:04d}")]
        assert [v for _, v in ticks] == values and len(ticks) == N_TOP
        for x, value in ticks:
            assert x == pytest.approx((min(max(value, lo), hi) - lo) / (hi - lo) * 160, abs=0.006)
        assert links == [(f"{href}/unit_{unit:04d}/histogram.txt", "txt"),
                         (f"{href}/unit_{unit:04d}/histogram.png", "png")]
    layer = tmp_path / "other" / "fc8"
    shutil.copytree(crops, layer)
    (layer / "unit_0002" / "histogram.txt").unlink()   # --do-histogram not run for this unit
    (layer / "unit_0003" / "histogram.png").unlink()
    assert gallery_main([str(copy), "--exemplars", str(layer)]) == 0
    text = (copy / "index.html").read_text()
    assert histogram_of(text, 2) is None and [k for _, k in histogram_of(text, 3)[2]] == ["txt"]
    assert len(histogram_of(text, 1)[0]) == 32


def test_missing_crops_and_info_files_show_what_exists(exemplified, tmp_path):
    results, crops = exemplified
    copy, layer = tmp_path / "res", tmp_path / "out dir" / "fc8"
    shutil.copytree(results, copy)
    shutil.copytree(crops, layer)
    (layer / "unit_0001" / "maxim_001.png").unlink()       # --do-maxes not run for this rank
    (layer / "unit_0002" / "info.txt").unlink()            # --do-info not run: ranks from the crops, values unknown
    (layer / "unit_0002" / "deconv_000.png").unlink()
    shutil.rmtree(layer / "unit_0003")                     # a unit crop_max_patches did not reach
    assert gallery_main([str(copy), "--exemplars", str(layer)]) == 0
    text = (copy / "index.html").read_text()
    rows = info_rows(crops / "unit_0001")
    figures = figures_of(text, 1)
    assert [(f[0], f[1]) for f in figures] == [(rank, value) for rank, (value, _) in enumerate(rows)]
    assert figures[1][2] is None and figures[0][2] == "../out%20dir/fc8/unit_0001/maxim_000.png"
    assert '<div class="missing" style="width:50px;height:50px">no crop</div>' in text
    assert [(f[0], f[1], f[3]) for f in figures_of(text, 2)] == [
        (0, "?", ["backprop"]), (1, "?", ["deconv", "backprop"]), (2, "?", ["deconv", "backprop"])]
    assert figures_of(text, 3) == [] and 'data-unit="3"' in text


def test_exemplars_of_another_layer_are_refused_in_one_line(exemplified, tmp_path, capsys):
    results, crops = exemplified
    other = tmp_path / "conv1"
    shutil.copytree(crops, other)
    before = _tree(results)
    assert gallery_main([str(results), "--exemplars", str(other)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--exemplars folder {str(other)!r} is of layer 'conv1'" in err, err
    assert "holds layer(s) fc8" in err and _tree(results) == before
    conv = tmp_path / "conv"           # two folders, the second without fc8: neither page is written
    conv.mkdir()
    (conv / "x_info.txt").write_text("FindParams:\n  push_layer: conv1\n  push_channel: 0\n  rand_seed: 0\n")
    before = _tree(tmp_path), _tree(results)
    assert gallery_main([str(results), str(conv), "--exemplars", str(crops)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"is of layer 'fc8' but {str(conv)!r} holds layer(s) conv1" in err, err
    assert (_tree(tmp_path), _tree(results)) == before


def _exemplars_with(crops, target, name, content):
    """A copy of the crops folder ``crops`` at ``target`` with ``name`` made: bytes, or None (removed)."""
    shutil.copytree(crops, target)
    if content is None:
        shutil.rmtree(target / name) if (target / name).is_dir() else (target / name).unlink()
    else:
        (target / name).write_bytes(content)
    return target


# name -> (the --exemplars folder, given the tmp folder and crops/fc8; the line's text)
BAD_EXEMPLARS = {
    "missing folder": (lambda tmp, crops: tmp / "fc8", "--exemplars folder '{t}/fc8' does not exist or is not a "
                                                       "folder"),
    "a file": (lambda tmp, crops: _file(tmp), "--exemplars folder '{t}/afile' does not exist or is not a folder"),
    "no unit folders": (lambda tmp, crops: _empty(tmp), "--exemplars folder '{t}/empty' holds no unit_NNNN folder"),
    "the outdir, not its layer": (lambda tmp, crops: _exemplars_with(crops.parent, tmp / "crops", "x", b""),
                                  "--exemplars folder '{t}/crops' holds no unit_NNNN folder"),
    "another layer": (lambda tmp, crops: _exemplars_with(crops, tmp / "fc7", "x", b""),
                      "--exemplars folder '{t}/fc7' is of layer 'fc7' but"),
    "binary info.txt": (lambda tmp, crops: _exemplars_with(crops, tmp / "fc8", "unit_0001/info.txt",
                                                           bytes(range(256))),
                        "cannot read {t}/fc8/unit_0001/info.txt: 'utf-8' codec can't decode"),
    "info.txt row not a number": (lambda tmp, crops: _exemplars_with(crops, tmp / "fc8", "unit_0002/info.txt",
                                                                     b"# is_conv val\n0 big 1 -1 p1.png\n"),
                                  "{t}/fc8/unit_0002/info.txt line 2 is not a crop_max_patches.py info.txt row"),
    "info.txt row short": (lambda tmp, crops: _exemplars_with(crops, tmp / "fc8", "unit_0002/info.txt",
                                                              b"# is_conv val\n1 0.5 1 -1 p1.png\n"),
                           "{t}/fc8/unit_0002/info.txt line 2 is not a crop_max_patches.py info.txt row"),
    "damaged crop": (lambda tmp, crops: _exemplars_with(crops, tmp / "fc8", "unit_0000/maxim_002.png", b"\x89PNG"),
                     "image '{t}/fc8/unit_0000/maxim_002.png'"),
    "histogram.txt without its header": (lambda tmp, crops: _exemplars_with(
        crops, tmp / "fc8", "unit_0001/histogram.txt", b"-inf 0 1\n0 1 2\n1 inf 0\n"),
        "{t}/fc8/unit_0001/histogram.txt is not a crop_max_patches.py histogram.txt (no '# ' header line)"),
    "histogram.txt row not numbers": (lambda tmp, crops: _exemplars_with(
        crops, tmp / "fc8", "unit_0001/histogram.txt", b"# h\n-inf 0 1\n0 1 many\n1 inf 0\n"),
        "{t}/fc8/unit_0001/histogram.txt line 3 is not a histogram.txt row"),
    "histogram.txt with a gap": (lambda tmp, crops: _exemplars_with(
        crops, tmp / "fc8", "unit_0001/histogram.txt", b"# h\n-inf 0 1\n0.5 1 2\n1 inf 0\n"),
        "{t}/fc8/unit_0001/histogram.txt is not a crop_max_patches.py histogram.txt (its rows must run"),
    "histogram.txt without a bin": (lambda tmp, crops: _exemplars_with(
        crops, tmp / "fc8", "unit_0001/histogram.txt", b"# h\n-inf 0 1\n0 inf 0\n"),
        "{t}/fc8/unit_0001/histogram.txt is not a crop_max_patches.py histogram.txt (its rows must run"),
}


@pytest.mark.parametrize("case", sorted(BAD_EXEMPLARS))
def test_bad_exemplars_input_is_one_line_exit_2_and_writes_nothing(exemplified, tmp_path, capsys, case):
    results, crops = exemplified
    make, expected = BAD_EXEMPLARS[case]
    argv = [str(results), "--exemplars", str(make(tmp_path, crops))]
    before, results_before = _tree(tmp_path), _tree(results.parent)
    assert gallery_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m dvtoolbox.cli.gallery: error: ") and err.count("\n") == 1, err
    assert expected.format(t=tmp_path) in err and "Traceback" not in err, err
    assert _tree(tmp_path) == before and _tree(results.parent) == results_before
