"""Resident memory of one process that optimizes on many models one after another (issue: the programs of every
model pushed used to stay in a module-level table, with the model). Uses only the public ``optimize()``, so the same
script measures any revision:

    PYTHONPATH=. python benchmarks/memory_many_models.py --models 50
    PYTHONPATH=/path/to/old/checkout python benchmarks/memory_many_models.py --models 50

Each model is a fresh torchvision ResNet-18 with random weights (45 MB of parameters) in dvtoolbox's pixel space,
pushed for ``--iters`` iterations at fc8 unit 1 on the CPU with the engine given (folded makes a copy of the model
per program). Prints the resident memory after every 10 models and how many of the models are still alive.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import weakref

import numpy as np
import torch

from dvtoolbox.device import Execution
from dvtoolbox.models.load import load_model
from dvtoolbox.optimize.loop import optimize
from dvtoolbox.optimize.params import FindParams
from dvtoolbox.optimize.start import initial_x


def resident_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--size", type=int, default=64, help="input side (small: the memory is the weights')")
    parser.add_argument("--engine", default="folded", choices=("eager", "folded"))
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # every model says it has random weights
    torch.manual_seed(0)
    torch.set_num_threads(1)
    alive = []
    print(f"models  resident MiB  alive   (ResNet-18, {args.size}x{args.size}, engine {args.engine}, "
          f"{args.iters} iterations each)")
    for k in range(1, args.models + 1):
        model = load_model("resnet18", weights=None, size=(args.size, args.size)).requires_grad_(False)
        mean = model.input_contract.mean_image((args.size, args.size))
        params = [FindParams(push_layer="fc8", push_channel=1, max_iter=args.iters, lr_params={"lr": 10.0})]
        x0 = np.stack([initial_x(q.start_at, q.rand_seed, mean) for q in params])
        optimize(model, params, x0, mean, (1000, 1, 1), execution=Execution(args.engine))
        alive.append(weakref.ref(model))
        del model
        if k % 10 == 0 or k == 1:
            gc.collect()
            print(f"{k:6d}  {resident_mib():12.0f}  {sum(r() is not None for r in alive):5d}", flush=True)


if __name__ == "__main__":
    main()
