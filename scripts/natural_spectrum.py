"""Compute the natural-image amplitude spectrum that MACO (``dvtoolbox.optvis.param.maco``) holds fixed, from
photographs with free licences shipped by two PyPI packages, and write ``dvtoolbox/data/natural_spectrum.npz``.

Run offline, once, in an environment with scikit-image and matplotlib (nothing is downloaded: these files are
inside the packages' wheels):

    python -m venv /tmp/spectrum && /tmp/spectrum/bin/pip install scikit-image matplotlib torch -e .
    /tmp/spectrum/bin/python scripts/natural_spectrum.py --brave

Photographs (all RGB): scikit-image's ``astronaut`` (NASA, public domain), ``chelsea`` (CC0, Stefan van der Walt),
``coffee`` (CC0, Rachel Michetti), ``rocket`` (SpaceX, public domain), and matplotlib's sample
``grace_hopper.jpg`` (U.S. Navy photograph, public domain). Each is resized (Lanczos) so that its shorter side is
256 pixels, and five 224 x 224 crops are taken (four corners and centre, ImageNet's evaluation geometry); the
spectrum is the mean over the 25 crops and their mirror images (``spectrum.average_spectrum``).
"""

from __future__ import annotations

import argparse
import io
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dvtoolbox.io.atomic import write_bytes_atomic  # noqa: E402
from dvtoolbox.optvis.spectrum import (REFERENCE_SIZE, average_spectrum, power_law_fit, radial_profile,  # noqa: E402
                                       sample_quadrant)

SOURCES = ("skimage.data.astronaut", "skimage.data.chelsea", "skimage.data.coffee", "skimage.data.rocket",
           "matplotlib sample_data/grace_hopper.jpg")
SHORT_SIDE = 256


def load_photographs():
    """name -> (H, W, 3) uint8."""
    import matplotlib.cbook
    import skimage.data
    from PIL import Image

    photos = {name: getattr(skimage.data, name.rsplit(".", 1)[1])() for name in SOURCES[:4]}
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        photos[SOURCES[4]] = np.asarray(Image.open(f).convert("RGB"))
    return photos


def crops(photo: np.ndarray, size: int = REFERENCE_SIZE, short_side: int = SHORT_SIDE):
    """Five (3, size, size) crops in [0, 1] of the photograph resized to ``short_side``: corners and centre."""
    from PIL import Image

    h, w = photo.shape[:2]
    scale = short_side / min(h, w)
    image = Image.fromarray(photo).resize((round(w * scale), round(h * scale)), Image.LANCZOS)
    a = np.asarray(image, dtype=np.float64).transpose(2, 0, 1) / 255.0
    H, W = a.shape[1:]
    corners = [(0, 0), (0, W - size), (H - size, 0), (H - size, W - size), ((H - size) // 2, (W - size) // 2)]
    return [a[:, y:y + size, x:x + size] for y, x in corners]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                  "dvtoolbox", "data", "natural_spectrum.npz"))
    ap.add_argument("--brave", action="store_true", help="overwrite --out")
    args = ap.parse_args(argv)
    if os.path.exists(args.out) and not args.brave:
        print(f"natural_spectrum.py: error: {args.out} exists; use --brave to overwrite", file=sys.stderr)
        return 2
    photos = load_photographs()
    images = [c for photo in photos.values() for c in crops(photo)]
    quadrant, mean, count = average_spectrum(images)
    amplitude = sample_quadrant(quadrant, REFERENCE_SIZE, REFERENCE_SIZE, REFERENCE_SIZE)
    slope, _, r2 = power_law_fit(*radial_profile(amplitude, REFERENCE_SIZE, REFERENCE_SIZE))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, quadrant=quadrant.astype(np.float32), mean=mean.astype(np.float32),
                        reference_size=np.int64(REFERENCE_SIZE), sources=np.asarray(SOURCES))
    write_bytes_atomic(args.out, buffer.getvalue())
    print(f"{count} crops of {len(photos)} photographs (and their mirror images): power-law slope {slope:.3f} "
          f"(r2 {r2:.4f}), mean z {np.round(mean, 3).tolist()}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
