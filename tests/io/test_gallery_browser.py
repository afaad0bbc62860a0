"""index.html in a real headless Chromium: the screenshot shows every unit's best_X thumbnail, the page's
JavaScript sorts the grid as #sort= / ?sort= ask, and with --exemplars every crop loads.

Skipped when no Chromium is installed, unless the environment variable CI is set: then it fails (install it with
``apt-get install -y chromium``)."""

import html
import json
import os
import re
import shutil
import subprocess
import urllib.parse

import numpy as np
import pytest

from dvtoolbox.io.images import load_image_rgb
from dvtoolbox.cli.gallery import main as gallery_main
from tests.io.gallery_results import EXEMPLAR_UNITS, N_TOP, UNITS, make_exemplars, make_results

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WINDOW = (900, 700)
SCALE = 20  # 8x8 tiny-model images are drawn 160x160, nearest neighbour (image-rendering: pixelated)
TOLERANCE = 3


def find_browser():
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("CI is set but no Chromium is installed (tried: " + ", ".join(BROWSERS) + "); "
                    "install it with: apt-get install -y chromium")
    pytest.skip("no Chromium installed (apt-get install -y chromium)")


def chromium(browser, tmp_path, *args):
    """Run headless Chromium with a throwaway profile; returns its stdout."""
    argv = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
            "--force-device-scale-factor=1", f"--user-data-dir={tmp_path / 'profile'}", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def browser():
    return find_browser()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("browser")
    assert make_results(path) == 0
    return path


def find_thumbnail(shot, img):
    """(row, col) where ``img`` (h, w, 3), scaled up SCALE times by repetition, is drawn in ``shot``; None if
    it is nowhere. Block centres are compared, each within TOLERANCE per channel."""
    h, w = img.shape[:2]
    centres = shot.astype(int)
    candidates = np.argwhere(np.all(np.abs(centres - img[0, 0].astype(int)) <= TOLERANCE, axis=2))
    offsets = np.arange(h) * SCALE + SCALE // 2 - 1
    for row, col in candidates[:20000]:
        rows, cols = row + offsets, col + np.arange(w) * SCALE + SCALE // 2 - 1
        if rows[-1] >= shot.shape[0] or cols[-1] >= shot.shape[1]:
            continue
        if np.all(np.abs(centres[np.ix_(rows, cols)] - img.astype(int)) <= TOLERANCE):
            return int(row), int(col)
    return None


def test_screenshot_shows_every_units_thumbnail(browser, folder, tmp_path):
    shot_path = tmp_path / "shot.png"
    chromium(browser, tmp_path, f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--screenshot={shot_path}",
             (folder / "index.html").as_uri())
    shot = load_image_rgb(str(shot_path))
    assert (shot.shape[1], shot.shape[0]) == WINDOW
    places = []
    for unit in UNITS:
        thumb = load_image_rgb(str(folder / f"opt_fc8_{unit:04d}_0_best_X.jpg"))
        assert thumb.shape == (8, 8, 3) and np.ptp(thumb) > 20  # not a flat image: the check means something
        place = find_thumbnail(shot, thumb)
        assert place is not None, f"unit {unit}'s best_X.jpg is not in the screenshot"
        places.append(place)
    assert len(set(places)) == len(UNITS)
    assert sorted(places, key=lambda p: (p[0], p[1])) == places  # unit order: left to right, top to bottom
    assert np.all(shot[:, :8] == 255)  # the page's white margin
    for row, col in places:  # each thumbnail sits in its cell (background #f7f7f7)
        assert shot[row + 80, col - 3].tolist() == [0xF7] * 3 and shot[row + 80, col + 162].tolist() == [0xF7] * 3


def dom_order(browser, tmp_path, url):
    dom = chromium(browser, tmp_path, "--virtual-time-budget=2000", "--dump-dom", url)
    sorted_by = re.search(r'<body data-sorted="([\w-]+)"', dom)
    return sorted_by and sorted_by.group(1), [int(u) for u in re.findall(r'class="cell[^"]*" [^>]*data-unit="(\d+)"',
                                                                         dom)]


def test_the_pages_javascript_sorts_by_unit_and_by_obj(browser, folder, tmp_path):
    summary = json.loads((folder / "opt_fc8_summary.json").read_text())["units"]
    by_obj = sorted(UNITS, key=lambda u: summary[str(u)]["best_obj"])
    assert by_obj != list(UNITS) and by_obj[::-1] != list(UNITS)  # the sorts are visible
    url = (folder / "index.html").as_uri()
    assert dom_order(browser, tmp_path, url) == ("unit", list(UNITS))
    assert dom_order(browser, tmp_path, url + "#sort=obj-desc") == ("obj-desc", by_obj[::-1])
    assert dom_order(browser, tmp_path, url + "#sort=obj-asc") == ("obj-asc", by_obj)
    assert dom_order(browser, tmp_path, url + "?sort=obj-asc") == ("obj-asc", by_obj)
    assert dom_order(browser, tmp_path, url + "#sort=nonsense") == ("unit", list(UNITS))


PROBE = """<script>
window.addEventListener("load", function () {
  var seen = Array.prototype.map.call(document.images, function (img) {
    return [img.getAttribute("src"), img.complete, img.naturalWidth, img.naturalHeight]; });
  document.body.setAttribute("data-images", JSON.stringify(seen));
});
</script>
</body>"""


def test_exemplar_crops_load_beside_the_synthetic_images(browser, tmp_path_factory, tmp_path):
    """A page built with --exemplars: every <img> (synthetic thumbnails and crops, in their relative folders) is
    loaded by the browser with its file's size. The page is read through a copy beside it, with a probe script."""
    root = tmp_path_factory.mktemp("exemplars browser")
    (root / "res").mkdir()
    assert make_results(root / "res") == 0
    crops = make_exemplars(root)
    assert gallery_main([str(root / "res"), "--exemplars", str(crops)]) == 0
    text = (root / "res" / "index.html").read_text()
    assert text.count("</body>") == 1
    (root / "res" / "probe.html").write_text(text.replace("</body>", PROBE))
    dom = chromium(browser, tmp_path, "--virtual-time-budget=3000", "--dump-dom",
                   (root / "res" / "probe.html").as_uri())
    found = re.search(r'<body [^>]*data-images="([^"]*)"', dom)
    assert found, dom[-2000:]
    seen = json.loads(html.unescape(found.group(1)))
    srcs = [s[0] for s in seen]
    expected = [f"opt_fc8_{u:04d}_0_best_X.jpg" for u in UNITS]
    expected += [f"../crops/fc8/unit_{u:04d}/maxim_{r:03d}.png" for u in EXEMPLAR_UNITS for r in range(N_TOP)]
    assert sorted(srcs) == sorted(expected) and len(srcs) == len(UNITS) + len(EXEMPLAR_UNITS) * N_TOP
    for src, complete, width, height in seen:
        shown = load_image_rgb(str(root / "res" / urllib.parse.unquote(src)))
        assert complete and width > 0 and (width, height) == (shown.shape[1], shown.shape[0]), src


HISTOGRAM_PROBE = """<script>
window.addEventListener("load", function () {
  var seen = Array.prototype.map.call(document.querySelectorAll("figure.hist"), function (fig) {
    var svg = fig.querySelector("svg"), box = svg.getBoundingClientRect();
    var bars = Array.prototype.map.call(svg.querySelectorAll("rect.bar"), function (r) {
      return [parseInt(r.dataset.count, 10), r.getBBox().height, getComputedStyle(r).fill]; });
    var ticks = Array.prototype.map.call(svg.querySelectorAll("line.top"), function (l) {
      return [parseFloat(l.dataset.value), l.getBBox().x]; });
    var cell = fig.closest(".cell");
    return [parseInt(cell.dataset.unit, 10), box.width, box.height, bars, ticks,
            fig.getBoundingClientRect().top > cell.querySelector("figure.exm").getBoundingClientRect().bottom];
  });
  document.body.setAttribute("data-histograms", JSON.stringify(seen));
});
</script>
</body>"""


def test_each_units_histogram_is_drawn_as_svg_below_its_crops(browser, tmp_path_factory, tmp_path):
    """The inline SVG histograms as the browser lays them out: 160 x 56 pixels, one bar per bin with its height
    proportional to the bin's count in histogram.txt, a red tick per top-N value, below the unit's crops."""
    root = tmp_path_factory.mktemp("histogram browser")
    (root / "res").mkdir()
    assert make_results(root / "res") == 0
    crops = make_exemplars(root)
    assert gallery_main([str(root / "res"), "--exemplars", str(crops)]) == 0
    text = (root / "res" / "index.html").read_text()
    (root / "res" / "probe.html").write_text(text.replace("</body>", HISTOGRAM_PROBE))
    dom = chromium(browser, tmp_path, "--virtual-time-budget=3000", "--dump-dom",
                   (root / "res" / "probe.html").as_uri())
    found = re.search(r'<body [^>]*data-histograms="([^"]*)"', dom)
    assert found, dom[-2000:]
    seen = json.loads(html.unescape(found.group(1)))
    assert [s[0] for s in seen] == list(EXEMPLAR_UNITS)
    for unit, width, height, bars, ticks, below in seen:
        lines = (crops / f"unit_{unit:04d}" / "histogram.txt").read_text().splitlines()[1:]
        counts = [int(line.split()[2]) for line in lines][1:-1]
        assert (width, height) == (160, 56) and below
        assert [b[0] for b in bars] == counts and len(counts) == 32
        tallest = max(counts)
        for count, bar_height, fill in bars:
            assert bar_height == pytest.approx(count / tallest * 46, abs=0.01)
            assert fill == "rgb(76, 114, 176)"
        info = (crops / f"unit_{unit:04d}" / "info.txt").read_text().splitlines()[1:]
        assert [t[0] for t in ticks] == [float(line.split()[1]) for line in info] and len(ticks) == N_TOP
