#!/usr/bin/env python
"""Units per second of optimize_image's whole-layer job for a dictionary's latents against the same layer's
channels (issue 23's speed goal: latents/s >= 0.9x channels/s at the same batch size), and the encoder matmul's
share of a step.

A random dictionary (``--latents`` unit-norm random directions, seeded, no bias) is written as a plain safetensors
file (``W_enc`` (d_in, n), ``b_enc``) in a temporary folder and bound to ``--layer`` of ``--model``. Two jobs
(``dvtoolbox.optimize.job.OptimizeJob`` / ``run_job``, the library call behind ``optimize_image.py``) run the same
``--units`` units, the same batch size, iterations, regularisation (the README's first command's), seeds, device
and ``--push-spatial``:

- channels: ``--push-layer LAYER --push-channel 0:UNITS``,
- latents:  ``--dictionary sae=LAYER=FILE --push-layer sae --push-channel 0:UNITS``.

Each job is timed end to end (model set-up, the loop, the files written), so the units/s figure is the user's.
The two alternate within interleaved rounds (the machine is shared: each round is printed) and the ratio of the
medians is the figure. The encoder alone (the tap's forward over every position of a batch, all latents, and the
pushed latents read through their encoder columns, forward and backward to the layer, as one step of the loop does
it) is timed per step in the same rounds. Then a projection to
``--project-latents`` latents on ``--project-workers`` workers from these measured parts (labelled with the device
it was measured on). Not a test.

    python benchmarks/bench_dictionary_units.py                       # _blocks.10 of the embedded model, CPU
    python benchmarks/bench_dictionary_units.py --device cuda --units 1024 --batch-size 256 --max-iter 200
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from _timing import machine, timed  # noqa: E402  (benchmarks/, the script's folder)
from dvtoolbox.dictionaries import load_dictionary  # noqa: E402
from dvtoolbox.dictionaries.dictionary import LayerDictionary  # noqa: E402
from dvtoolbox.dictionaries.tap import DictionaryTap, channels_first_pre_activation  # noqa: E402
from dvtoolbox.models.layouts import NCHW  # noqa: E402
from dvtoolbox.optimize.job import OptimizeJob, run_job  # noqa: E402
from dvtoolbox.optimize.params import FindParams  # noqa: E402

README_REGULARISATION = dict(decay=0.0001, blur_radius=1.0, blur_every=4, lr_policy="constant",
                             lr_params={"lr": 100.0})


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--layer", default="_blocks.10")
    parser.add_argument("--channels", type=int, default=112, help="the layer's channel count (the dictionary's d_in)")
    parser.add_argument("--push-spatial", default="7,7", help="y,x of every unit")
    parser.add_argument("--latents", type=int, default=4096, help="latents of the random dictionary")
    parser.add_argument("--units", type=int, default=32, help="units per job (at most --channels)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-iter", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (CPU runs)")
    parser.add_argument("--seed", type=int, default=0, help="of the random dictionary")
    parser.add_argument("--project-latents", type=int, default=32768)
    parser.add_argument("--project-workers", type=int, default=8)
    parser.add_argument("--project-iters", type=int, default=1000, help="iterations per unit in the projection")
    return parser


def write_random_dictionary(folder: str, d_in: int, n: int, seed: int) -> str:
    """A plain safetensors dictionary: W_enc (d_in, n) of unit-norm random columns, b_enc zeros; its path."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d_in, n, generator=g)
    path = os.path.join(folder, "random_dictionary.safetensors")
    save_file({"W_enc": (w / w.norm(dim=0, keepdim=True)).contiguous(), "b_enc": torch.zeros(n)}, path)
    return path


def make_job(args, layer: str, out: str, dictionaries: dict) -> OptimizeJob:
    y, x = (int(v) for v in args.push_spatial.split(","))
    params = FindParams(push_layer=layer, push_channel=0, push_spatial=(y, x), max_iter=args.max_iter,
                        **README_REGULARISATION)
    return OptimizeJob(params=params, model=args.model, device=args.device, channels=f"0:{args.units}",
                       batch_size=args.batch_size, output_prefix=os.path.join(out, "opt"), brave=True,
                       dictionaries=dictionaries)


def encoder_step(bound: LayerDictionary, args, device: torch.device):
    """One loop step's dictionary work, as the loop does it: the tap's pre-activations of every latent at every
    position of a batch of the layer's output (batch, channels, 14, 14) (``tap.channels_first_pre_activation``; the
    loop's statistics read them all), and the pushed latent of each batch element read through its one encoder
    column (``DictionaryTap.read_units``), forward and backward to the layer."""
    dictionary = bound.dictionary.on(device, torch.float32)
    tap = DictionaryTap(bound, NCHW)
    g = torch.Generator().manual_seed(1)
    acts = torch.randn(args.batch_size, args.channels, 14, 14, generator=g).to(device).requires_grad_(True)
    y, x = (int(v) for v in args.push_spatial.split(","))
    rows = torch.arange(args.batch_size, device=device)
    latents, ys, xs = rows % args.latents, torch.full_like(rows, y), torch.full_like(rows, x)

    def step():
        channels_first_pre_activation(dictionary, acts)
        torch.autograd.grad(tap.read_units(acts, latents, ys, xs).sum(), acts)
    return step


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    logging_quiet()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_random_dictionary(tmp, args.channels, args.latents, args.seed)
        bound = LayerDictionary(args.layer, load_dictionary(path))
        jobs = {"channels": make_job(args, args.layer, os.path.join(tmp, "channels"), {}),
                "latents": make_job(args, "sae", os.path.join(tmp, "latents"), {"sae": bound})}
        step = encoder_step(bound, args, device)
        for name, job in jobs.items():  # warm-up (lazy inits, the allocator)
            print(f"warm-up {name}: {timed(lambda job=job: run_job(job), device):.1f} s", flush=True)
        times = {name: [] for name in jobs}
        encoder = []
        for r in range(args.rounds):
            for name in (list(jobs) if r % 2 == 0 else reversed(list(jobs))):
                times[name].append(timed(lambda job=jobs[name]: run_job(job), device))
            encoder.append(min(timed(step, device) for _ in range(5)))
            print(f"round {r + 1}: channels {args.units / times['channels'][-1]:.3f} units/s "
                  f"({times['channels'][-1]:.1f} s), latents {args.units / times['latents'][-1]:.3f} units/s "
                  f"({times['latents'][-1]:.1f} s), encoder step {1000 * encoder[-1]:.1f} ms", flush=True)
    report(args, device, times, encoder)
    return 0


def logging_quiet() -> None:
    import logging
    logging.basicConfig(level=logging.WARNING)


def report(args, device: torch.device, times: dict, encoder: list) -> None:
    channels_s, latents_s, enc_s = (statistics.median(times["channels"]), statistics.median(times["latents"]),
                                    statistics.median(encoder))
    rate_c, rate_l = args.units / channels_s, args.units / latents_s
    where = machine(device, args.threads)
    print(f"{args.model} {args.layer} ({args.channels} channels), random dictionary of {args.latents} latents; "
          f"{args.units} units per job, batch {args.batch_size}, {args.max_iter} iterations, {args.rounds} rounds, "
          f"{where}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"load average (1 min) {os.getloadavg()[0]:.2f}")
    print(f"channels: {rate_c:.3f} units/s (median job {channels_s:.1f} s)")
    print(f"latents:  {rate_l:.3f} units/s (median job {latents_s:.1f} s)")
    print(f"ratio of medians, latents/s over channels/s: {rate_l / rate_c:.3f} (goal >= 0.9)")
    steps = args.units / args.batch_size * args.max_iter
    print(f"encoder alone: {1000 * enc_s:.1f} ms per step of batch {args.batch_size} (all {args.latents} latents "
          f"at every position forward, the pushed latents' columns forward + backward) = "
          f"{100 * enc_s * steps / latents_s:.1f}% of the latents job")
    print(projection(args, where, channels_s, latents_s, enc_s))


def projection(args, where: str, channels_s: float, latents_s: float, encoder_s: float) -> str:
    """The projected wall time of ``--project-latents`` latents x ``--project-iters`` iterations on
    ``--project-workers`` workers each as fast as the device measured: per unit and iteration, the channel job's
    time plus the dictionary's extra scaled by the latent count (the tap computes every latent at every position,
    and the loop's statistics read them all): the latents job's extra time over the channels job, or the encoder's
    own time per unit where that is larger (the jobs' difference is within their noise). Both jobs' fixed costs
    (set-up, files) are counted per iteration too, so it errs long."""
    per_iter = args.units * args.max_iter
    layer = channels_s / per_iter
    extra = max((latents_s - channels_s) / per_iter, encoder_s / args.batch_size)
    scale = args.project_latents / args.latents
    per_worker = args.project_latents / args.project_workers
    hours = per_worker * args.project_iters * (layer + scale * extra) / 3600
    return (f"PROJECTION from the parts measured above on {where}, NOT a GPU measurement: {args.project_latents} "
            f"latents x {args.project_iters} iterations on {args.project_workers} workers each as fast as this device: "
            f"{per_worker:.0f} latents per worker x {args.project_iters} x ({1000 * layer:.1f} ms layer + "
            f"{scale:.0f} x {1000 * extra:.1f} ms dictionary per unit-iteration) = {hours:.0f} h")


if __name__ == "__main__":
    sys.exit(main())
