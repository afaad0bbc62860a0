#!/usr/bin/env python
"""The README's first command, this checkout against another revision, side by side on this machine.

Exports ``optimize_image.py`` and ``dvtoolbox/`` of ``--base`` (a git revision of this repository) with
``git archive`` into a temporary folder, then runs the README's first command (the flamingo: fc8 unit 130,
Table-1 row 3, ``--max-iter`` iterations, default 1000) alternately from that copy and from this checkout, each run
a fresh process with the same flags, ``--rounds`` rounds (A B, A B, ...; the order alternates between rounds), so
that machine noise hits both alike. Reports each run's wall time and CPU time (user + system of the child), the
medians, the ratio base / this, and whether the first ``--compare`` iterations' obj values are equal (bit for bit
and to float32 rounding), read from both runs' info_big.pkl. Extra arguments after ``--`` go to both commands
(e.g. ``-- --engine folded``). Not a test: run it by hand.

    python benchmarks/ab_first_command.py --base 6e1d349 [--rounds 2] [--max-iter 1000] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import pickle
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRST_COMMAND = ["--push-layer", "fc8", "--push-channel", "130", "--decay", "0.0001", "--blur-radius", "1.0",
                 "--blur-every", "4", "--lr-policy", "constant", "--lr-params", "{'lr': 100.0}"]


def export(revision: str, folder: str) -> str:
    """``optimize_image.py`` and ``dvtoolbox/`` of ``revision`` in ``folder``; returns the folder."""
    archive = subprocess.run(["git", "-C", ROOT, "archive", revision, "optimize_image.py", "dvtoolbox"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    return folder


def run_once(tree: str, out: str, max_iter: int, threads: int, extra) -> tuple:
    """(wall seconds, CPU seconds) of one run of the first command from ``tree``, writing under ``out``."""
    env = dict(os.environ, PYTHONPATH=tree, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    argv = [sys.executable, os.path.join(tree, "optimize_image.py"), *FIRST_COMMAND, "--max-iter", str(max_iter),
            "--output-prefix", os.path.join(out, "opt"), "--brave", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, cwd=out, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def first_objs(out: str) -> np.ndarray:
    with open(os.path.join(out, "opt_fc8_0130_0_info_big.pkl"), "rb") as f:
        return np.asarray(pickle.load(f)[1].obj, np.float32)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--base", required=True, help="git revision to compare with (e.g. main's commit)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-iter", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compare", type=int, default=10, help="iterations whose obj values are compared")
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    work = tempfile.mkdtemp(prefix="dvtoolbox_ab_")
    try:
        os.makedirs(os.path.join(work, "base"))
        trees = {"base": export(args.base, os.path.join(work, "base")), "this": ROOT}
        times = {name: [] for name in trees}
        for r in range(args.rounds):
            order = list(trees) if r % 2 == 0 else list(reversed(list(trees)))
            for name in order:
                out = os.path.join(work, f"out_{name}")
                os.makedirs(out, exist_ok=True)
                wall, cpu = run_once(trees[name], out, args.max_iter, args.threads, extra)
                times[name].append((wall, cpu))
                print(f"round {r + 1} {name:4}: wall {wall:7.1f} s, cpu {cpu:7.1f} s, load average "
                      f"{os.getloadavg()[0]:.2f}", flush=True)
        med = {name: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t))
               for name, t in times.items()}
        low = {name: (min(w for w, _ in t), min(c for _, c in t)) for name, t in times.items()}
        print(f"README's first command, --max-iter {args.max_iter}, {args.threads} threads, {args.rounds} rounds; "
              f"extra flags: {' '.join(extra) or 'none'}")
        for name in trees:
            print(f"{name:4}: median wall {med[name][0]:7.1f} s, cpu {med[name][1]:7.1f} s; minimum wall "
                  f"{low[name][0]:7.1f} s, cpu {low[name][1]:7.1f} s")
        print(f"base / this: medians wall {med['base'][0] / med['this'][0]:.3f}x, cpu "
              f"{med['base'][1] / med['this'][1]:.3f}x; minima wall {low['base'][0] / low['this'][0]:.3f}x, cpu "
              f"{low['base'][1] / low['this'][1]:.3f}x (on a shared machine other work only adds time: the minima "
              "are the steadier estimate)")
        a, b = first_objs(os.path.join(work, "out_base")), first_objs(os.path.join(work, "out_this"))
        k = min(args.compare, len(a), len(b))
        rel = float(np.max(np.abs(a[:k] - b[:k]) / np.maximum(np.abs(a[:k]), 1e-30)))
        print(f"first {k} obj: bit for bit {bool(np.array_equal(a[:k], b[:k]))}, max relative difference {rel:.3g}")
        print(f"last obj: base {a[-1]:.6g}, this {b[-1]:.6g}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
