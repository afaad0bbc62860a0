"""find_max_acts' throughput against the bare forward pass of the same model to the deepest requested layer, at the
same batch size, measured in one run (rounds interleaved; the machines are shared and noisy):

    python benchmarks/bench_find_max_acts.py --images 192 --layers _blocks.10,fc8 --batch-size 32

find_max_acts: ``run_find_maxes`` on a folder of ``--images`` photographs (the repository's 12 ImageNet validation
photographs, repeated through symbolic links), decoding in DataLoader workers, tracking every unit's top N; its
images/s counts the streaming loop (decoding, forward, tracking), not the model's loading. Bare: the same batches,
decoded and preprocessed beforehand, through ``forward_layers`` alone (the forward pass stopped after the deepest
layer). Prints each round and the ratio of the medians; the goal of the issue is >= 0.9.

The activation histograms (``--hist-bins``, default 32 as find_max_acts.py's): each round also runs find_max_acts
without them (``hist_bins=0``), so the histograms' cost is the ratio of the two loops' images/s; the calibration
pass that fixes their bins (the first 64 images, once per run) is timed apart, as seconds. On a shared, loaded
machine the two loops' ratio drowns in noise; the counting itself is therefore also timed alone, on the first
batch's unit values of every layer (``HistogramCounter.update``, median of 30), against the bare forward per batch.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time

import torch

from dvtoolbox.device import Execution
from dvtoolbox.exemplars.data import default_workers, image_batches, preprocess_for, scan_folder
from dvtoolbox.exemplars.histogram import HistogramCounter, calibrated_edges, empty_histogram
from dvtoolbox.exemplars.job import FindMaxesJob, forward_layers, plan_layers, run_find_maxes
from dvtoolbox.exemplars.tracker import unit_values
from dvtoolbox.run.context import ModelChoice, open_run

PHOTOS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "data", "images")


def photo_folder(n: int, root: str) -> str:
    """``root`` holding n links to the repository's photographs, in turn."""
    photos = sorted(p for p in os.listdir(PHOTOS) if p.endswith(".jpg") and "_gray" not in p)
    for k in range(n):
        os.symlink(os.path.join(PHOTOS, photos[k % len(photos)]), os.path.join(root, f"{k:06d}.jpg"))
    return root


def bare_images_per_s(model, plan, batches, precision: str) -> float:
    start = time.perf_counter()
    count = 0
    for x in batches:
        forward_layers(model, plan, x, precision)
        count += x.shape[0]
    return count / (time.perf_counter() - start)


def histogram_ms_per_batch(model, plan, batch, bins: int, repeats: int = 30) -> float:
    """Milliseconds to count one batch's unit values of every planned layer into their histograms (median)."""
    values = [unit_values(out)[0] for out in forward_layers(model, plan, batch, "float32").values()]
    counters = [HistogramCounter(empty_histogram(calibrated_edges(v, bins)), batch.device) for v in values]
    times = []
    for _ in range(repeats):
        if batch.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for counter, v in zip(counters, values):
            counter.update(v)
        if batch.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--images", type=int, default=192)
    parser.add_argument("--layers", default="_blocks.10,fc8")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default=None)
    parser.add_argument("--hist-bins", type=int, default=32)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    layers = tuple(args.layers.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        os.mkdir(os.path.join(tmp, "photos"))
        folder = photo_folder(args.images, os.path.join(tmp, "photos"))
        context = open_run(ModelChoice(args.model), args.device, Execution("eager"))
        model = context.model
        job_args = dict(model=ModelChoice(args.model), datadir=folder, layers=layers, batch_size=args.batch_size,
                        workers=args.workers, device=args.device, progress=False, checkpoint_every=0, brave=True)
        plan = plan_layers(model, FindMaxesJob(outfile=os.path.join(tmp, "plan.npz"), **job_args))
        images = scan_folder(folder)
        batches = [x.to(context.device) for x, _, _ in
                   image_batches(images, range(len(images.paths)), preprocess_for(model), args.batch_size, 0)]
        workers = default_workers() if args.workers is None else args.workers
        print(f"{args.model}, layers {', '.join(layers)}, {args.images} images, batch {args.batch_size}, "
              f"{workers} workers, {context.device}, {torch.get_num_threads()} threads")
        found, bare, plain, calibration = [], [], [], []
        for r in range(args.rounds):
            bare.append(bare_images_per_s(model, plan, batches, "float32"))
            summary = run_find_maxes(FindMaxesJob(outfile=os.path.join(tmp, f"maxes{r}.npz"),
                                                  hist_bins=args.hist_bins, **job_args))
            found.append(summary["images_per_s"])
            calibration.append(summary["calibration_seconds"])
            summary = run_find_maxes(FindMaxesJob(outfile=os.path.join(tmp, f"plain{r}.npz"), hist_bins=0,
                                                  **job_args))
            plain.append(summary["images_per_s"])
            print(f"round {r}: bare {bare[-1]:.1f} images/s, find_max_acts {found[-1]:.1f} images/s "
                  f"(histograms of {args.hist_bins} bins; calibration {calibration[-1]:.2f} s), without histograms "
                  f"{plain[-1]:.1f} images/s")
        med = statistics.median
        if args.hist_bins:
            counting = histogram_ms_per_batch(model, plan, batches[0], args.hist_bins)
            forward = 1000 * batches[0].shape[0] / med(bare)
            print(f"histogram counting alone: {counting:.2f} ms per batch of {batches[0].shape[0]}, the bare forward "
                  f"{forward:.0f} ms per batch: {counting / forward:.4f} of it")
        print(f"median: bare {med(bare):.1f}, find_max_acts {med(found):.1f}, without histograms {med(plain):.1f} "
              f"images/s; find_max_acts / bare = {med(found) / med(bare):.2f}, with / without histograms = "
              f"{med(found) / med(plain):.3f}; calibration {med(calibration):.2f} s per run")


if __name__ == "__main__":
    main()
