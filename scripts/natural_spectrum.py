"""Compute the natural-image statistics that MACO (``dvtoolbox.optvis.param.maco``) holds its images to: the
amplitude spectrum (fixed) and the spread of the photographs' mean colours (the range the mean colour may move in),
from photographs with free licences shipped inside PyPI wheels, and write ``dvtoolbox/data/natural_spectrum.npz``.

Run offline, once; the photographs are read straight out of the wheels (nothing is installed or downloaded at run
time, nothing is executed from the wheels):

    pip download --no-deps --only-binary :all: -d WHEELS scikit-image==0.26.0 scikit-learn==1.9.1 \\
        matplotlib==3.11.2 scipy==1.9.3
    python scripts/natural_spectrum.py --wheels WHEELS --brave

Photographs (``PHOTOGRAPHS``: every colour photograph of a scene or an object, with a free licence, that we found in
the wheels of the package index; licences in ``dvtoolbox/data/README.md``). Each is resized (Lanczos, never
enlarged) so that its shorter side is each of ``SHORT_SIDES`` it reaches, and cut into 224-pixel crops on a grid
with a stride of at most 112 pixels at each scale; the spectrum is the mean over the crops and their mirror images
(``spectrum.average_spectrum``), each (photograph, scale) weighted equally.
"""

from __future__ import annotations

import argparse
import bz2
import glob
import io
import os
import sys
import zipfile
from typing import Dict, List, Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dvtoolbox.io.atomic import write_bytes_atomic  # noqa: E402
from dvtoolbox.optvis.param.color import COLOR_CORRELATION_NORMALIZED  # noqa: E402
from dvtoolbox.optvis.spectrum import (REFERENCE_SIZE, average_spectrum, decorrelated_logit,  # noqa: E402
                                       power_law_fit, radial_profile, sample_quadrant)

# name -> (wheel name prefix, member in the wheel)
PHOTOGRAPHS: Dict[str, Tuple[str, str]] = {
    "astronaut": ("scikit_image-0.26.0", "skimage/data/astronaut.png"),
    "chelsea": ("scikit_image-0.26.0", "skimage/data/chelsea.png"),
    "coffee": ("scikit_image-0.26.0", "skimage/data/coffee.png"),
    "rocket": ("scikit_image-0.26.0", "skimage/data/rocket.jpg"),
    "grace_hopper": ("matplotlib-3.11.2", "matplotlib/mpl-data/sample_data/grace_hopper.jpg"),
    "china": ("scikit_learn-1.9.1", "sklearn/datasets/images/china.jpg"),
    "flower": ("scikit_learn-1.9.1", "sklearn/datasets/images/flower.jpg"),
    "face": ("scipy-1.9.3", "scipy/misc/face.dat"),     # bz2 of 768 x 1024 x 3 uint8, scipy.misc.face()
}
SHORT_SIDES = (224, 256, 320, 384, 448, 512)
MAX_STRIDE = 112


def read_photograph(wheels: str, name: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB, read out of the wheel (a zip file) without installing it."""
    from PIL import Image

    prefix, member = PHOTOGRAPHS[name]
    found = sorted(glob.glob(os.path.join(wheels, prefix + "-*.whl")))
    if not found:
        raise SystemExit(f"natural_spectrum.py: error: no {prefix}-*.whl in {wheels} (see the docstring)")
    with zipfile.ZipFile(found[0]) as wheel:
        data = wheel.read(member)
    if member.endswith(".dat"):
        return np.frombuffer(bz2.decompress(data), dtype=np.uint8).reshape(768, 1024, 3)
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def grid_positions(length: int, size: int = REFERENCE_SIZE, max_stride: int = MAX_STRIDE) -> List[int]:
    """Evenly spaced crop starts from 0 to length - size with a stride of at most ``max_stride``."""
    n = int(np.ceil((length - size) / max_stride)) + 1
    return sorted(set(np.linspace(0, length - size, n).round().astype(int).tolist()))


def crops_at(photo: np.ndarray, short_side: int, size: int = REFERENCE_SIZE) -> List[np.ndarray]:
    """(3, size, size) crops in [0, 1] of the photograph resized so its shorter side is ``short_side``."""
    from PIL import Image

    h, w = photo.shape[:2]
    scale = short_side / min(h, w)
    image = Image.fromarray(photo).resize((round(w * scale), round(h * scale)), Image.LANCZOS)
    a = np.asarray(image, dtype=np.float64).transpose(2, 0, 1) / 255.0
    return [a[:, y:y + size, x:x + size] for y in grid_positions(a.shape[1]) for x in grid_positions(a.shape[2])]


def scales_of(photo: np.ndarray) -> List[int]:
    """The ``SHORT_SIDES`` a photograph reaches without being enlarged."""
    return [s for s in SHORT_SIDES if s <= min(photo.shape[:2])]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheels", required=True, help="a folder holding the wheels named in the docstring")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                  "dvtoolbox", "data", "natural_spectrum.npz"))
    ap.add_argument("--brave", action="store_true", help="overwrite --out")
    args = ap.parse_args(argv)
    if os.path.exists(args.out) and not args.brave:
        print(f"natural_spectrum.py: error: {args.out} exists; use --brave to overwrite", file=sys.stderr)
        return 2
    quadrants, z_means, rgb_means, n_crops = [], [], [], 0
    for name in PHOTOGRAPHS:
        photo = read_photograph(args.wheels, name)
        for side in scales_of(photo):
            crops = crops_at(photo, side)
            quadrant, _, count = average_spectrum(crops)
            quadrants.append(quadrant)
            z_means += [decorrelated_logit(c).mean(axis=(1, 2)) for c in crops]
            rgb_means += [c.mean(axis=(1, 2)) for c in crops]
            n_crops += count
    quadrant = np.mean(quadrants, axis=0)
    z_means, rgb_means = np.array(z_means), np.array(rgb_means)
    # MACO's mean colour moves its RGB logits' mean between the logits of the crops' lowest and highest mean RGB:
    # with a symmetric texture around it, the image's mean RGB then lies between that logit's sigmoid and 0.5
    logit_low, logit_high = (np.log(v / (1 - v)) for v in (rgb_means.min(axis=0), rgb_means.max(axis=0)))
    start = COLOR_CORRELATION_NORMALIZED.astype(np.float64) @ z_means.mean(axis=0)
    assert np.all((logit_low < start) & (start < logit_high)), (logit_low, start, logit_high)
    amplitude = sample_quadrant(quadrant, REFERENCE_SIZE, REFERENCE_SIZE, REFERENCE_SIZE)
    slope, _, r2 = power_law_fit(*radial_profile(amplitude, REFERENCE_SIZE, REFERENCE_SIZE))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, quadrant=quadrant.astype(np.float32), mean=z_means.mean(axis=0).astype(np.float32),
                        logit_low=logit_low.astype(np.float32), logit_high=logit_high.astype(np.float32),
                        rgb_mean=rgb_means.mean(axis=0).astype(np.float32),
                        rgb_low=rgb_means.min(axis=0).astype(np.float32),
                        rgb_high=rgb_means.max(axis=0).astype(np.float32),
                        reference_size=np.int64(REFERENCE_SIZE), sources=np.asarray(list(PHOTOGRAPHS)))
    write_bytes_atomic(args.out, buffer.getvalue())
    print(f"{n_crops} crops of {len(PHOTOGRAPHS)} photographs at {len(quadrants)} (photograph, scale) pairs: "
          f"power-law slope {slope:.3f} (r2 {r2:.4f}); mean colour (RGB) {np.round(rgb_means.mean(0), 3).tolist()}, "
          f"range {np.round(rgb_means.min(0), 3).tolist()} .. {np.round(rgb_means.max(0), 3).tolist()}; "
          f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
