"""Peak resident memory of find_max_acts for datasets of different sizes (the tracker keeps O(units x N), so the
peak should not grow with the number of images):

    python benchmarks/memory_find_max_acts.py --images 1000,10000

Each size runs ``find_max_acts.py`` in its own process on a folder of that many links to the repository's 12
photographs (EfficientNet-Lite0, layers ``_blocks.10`` and ``fc8``, N 9, batch 32, decoding in the main process), and
prints the process's peak resident memory (``getrusage`` of the child), its images/s and the ratio to the first size.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_find_max_acts import photo_folder  # noqa: E402  (the benchmarks share their photo folder)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def peak_rss_mib(n: int, layers: str, workers: int) -> tuple:
    """(peak resident MiB of one find_max_acts run on n images, its wall seconds)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "photos")
        os.mkdir(folder)
        photo_folder(n, folder)
        argv = [sys.executable, os.path.join(ROOT, "find_max_acts.py"), "--layers", layers, "--workers", str(workers),
                "--checkpoint-every", "0", folder, os.path.join(tmp, "maxes.npz")]
        start = time.perf_counter()
        child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _, err = child.communicate()
        seconds = time.perf_counter() - start
        if child.returncode != 0:
            raise SystemExit(f"find_max_acts failed on {n} images: {err.strip().splitlines()[-1:]}")
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the largest child so far: run sizes in rising order
        return usage.ru_maxrss / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="1000,10000", help="sizes, rising")
    parser.add_argument("--layers", default="_blocks.10,fc8")
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    sizes = [int(s) for s in args.images.split(",")]
    first = None
    for n in sizes:
        mib, seconds = peak_rss_mib(n, args.layers, args.workers)
        first = first or mib
        print(f"{n:7d} images: peak RSS {mib:7.0f} MiB ({mib / first:.3f}x the first), {seconds:6.0f} s, "
              f"{n / seconds:5.1f} images/s (start-up included)", flush=True)


if __name__ == "__main__":
    main()
