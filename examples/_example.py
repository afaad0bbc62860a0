"""What the torchlight examples share: their common flags, the overwrite rule, the device, the closing line.

The examples keep the torchlight README's own lines (objective, ``FeatureViz``, ``visualize``) in view; everything
around them lives here.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout


def example_parser(doc: str, output: str, what: str) -> argparse.ArgumentParser:
    """The flags every example takes; ``output`` is the default PNG, ``what`` says what it holds."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--lr", type=float, default=0.05, help="Adam learning rate")
    parser.add_argument("--seed", type=int, default=0, help="seed of the torch.Generator")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when present)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--output", default=output, help=f"PNG of {what}")
    parser.add_argument("--brave", action="store_true", help="overwrite --output if it exists")
    return parser


def prepare_run(args: argparse.Namespace):
    """Logging, threads and the device; None (after one line on stderr) when --output exists without --brave."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if os.path.exists(args.output) and not args.brave:
        print(f"{args.output} exists; add --brave to overwrite it", file=sys.stderr)
        return None
    torch.set_num_threads(args.threads)
    return args.device or ("cuda" if torch.cuda.is_available() else "cpu")


def report(fv, seconds: float, device: str, output: str) -> None:
    print(f"{fv.objective}: objective {fv.history[0]:.4f} at step 1, {fv.history[-1]:.4f} at step "
          f"{len(fv.history)}; {seconds:.1f} s on {device}; wrote {output}")
