"""How far find_max_acts' bf16 tracker is from its float32 one: top-N overlap and value errors per layer.

    python benchmarks/precision_find_max_acts.py [--layers _blocks.5,_blocks.10,_blocks.15,fc8] [--precision bf16]

Runs ``find_max_acts`` twice on the repository's 12 ImageNet photographs (tests/data/images, EfficientNet-Lite0 with
its published weights, batch 12), once in float32 and once in the other precision, with N 12: every unit's top 12
then holds every image, so each unit's value in each image is known in both runs. Per layer it prints:

- top-1: the share of units whose best image is the same in both runs;
- top-k overlap: the mean over units of |float32's top k & the other's top k| / k, for k = 3 and 6;
- rank order: the share of units whose whole ranking of the 12 images is the same;
- value error: the median and max over units of |v_other - v_float32| / |v_float32| for the unit's best image
  (float32's), and
  max over all (unit, image) of |v_other - v_float32| / max over the unit's images of |v_float32| (the error in units
  of the unit's own scale);
- position: the share of (unit, image) whose recorded position (argmax on the grid) is the same.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dvtoolbox.exemplars.job import FindMaxesJob, run_find_maxes  # noqa: E402
from dvtoolbox.exemplars.tracker import load_maxes  # noqa: E402
from dvtoolbox.run.context import ModelChoice  # noqa: E402

IMAGES = os.path.join(ROOT, "tests", "data", "images")


def by_image(maxes) -> tuple:
    """(values (U, I), positions (U, I, 2)) indexed by image, from a top N that holds every image."""
    units, n = maxes.values.shape
    values = np.full((units, n), np.nan, np.float64)
    positions = np.zeros((units, n, 2), np.int64)
    rows = np.arange(units)[:, None].repeat(n, 1)
    values[rows, maxes.images] = maxes.values
    positions[rows, maxes.images] = maxes.positions
    return values, positions


def compare(reference, other) -> dict:
    """The figures of the module docstring for one layer's two trackers (both holding every image)."""
    v_ref, p_ref = by_image(reference)
    v_oth, p_oth = by_image(other)
    out = {"top-1": float(np.mean(reference.images[:, 0] == other.images[:, 0]))}
    for k in (3, 6):
        out[f"top-{k}"] = float(np.mean([len(set(a[:k]) & set(b[:k])) / k
                                         for a, b in zip(reference.images, other.images)]))
    out["order"] = float(np.mean((reference.images == other.images).all(axis=1)))
    best = reference.values[:, 0].astype(np.float64)
    best_other = v_oth[np.arange(len(best)), reference.images[:, 0]]
    rel = np.abs(best_other - best) / np.maximum(np.abs(best), 1e-12)
    out["best rel"], out["best rel median"] = float(np.max(rel)), float(np.median(rel))
    scale = np.maximum(np.abs(v_ref).max(axis=1, keepdims=True), 1e-12)
    out["scaled"] = float(np.max(np.abs(v_oth - v_ref) / scale))
    out["position"] = float(np.mean((p_ref == p_oth).all(axis=2)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="_blocks.5,_blocks.10,_blocks.15,fc8")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    layers = tuple(args.layers.split(","))
    photos = sorted(n for n in os.listdir(IMAGES) if n.startswith("ILSVRC"))
    with tempfile.TemporaryDirectory() as tmp:
        filelist = os.path.join(tmp, "photos.txt")
        with open(filelist, "w") as handle:
            handle.write("".join(f"{n}\n" for n in photos))
        results = {}
        for precision in ("float32", args.precision):
            outfile = os.path.join(tmp, f"{precision}.npz")
            run_find_maxes(FindMaxesJob(ModelChoice("efficientnet_lite0"), IMAGES, outfile, filelist,
                                        n_top=len(photos), layers=layers, batch_size=len(photos), workers=0,
                                        device=args.device, precision=precision, progress=False))
            results[precision] = load_maxes(outfile)[2]
    print(f"{len(photos)} photographs, EfficientNet-Lite0, {args.precision} against float32 on {args.device}")
    print("| layer | units | top-1 same | top-3 overlap | top-6 overlap | whole order same "
          "| best value rel. error (median, max) | max error / unit scale | position same |")
    print("|---|---|---|---|---|---|---|---|---|")
    for layer in layers:
        f = compare(results["float32"][layer], results[args.precision][layer])
        print(f"| {layer} | {results['float32'][layer].units} | {f['top-1']:.1%} | {f['top-3']:.1%} | "
              f"{f['top-6']:.1%} | {f['order']:.1%} | {f['best rel median']:.2%}, {f['best rel']:.2%} | {f['scaled']:.2%} | "
              f"{f['position']:.1%} |")


if __name__ == "__main__":
    main()
