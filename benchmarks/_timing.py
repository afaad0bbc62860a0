"""What the benchmarks share: wall-clock timing that waits for the GPU, interleaved rounds, the machine's name."""

from __future__ import annotations

import statistics
import time
from typing import Callable, Dict

import torch


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds ``fn()`` takes, with the device's queued work finished before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def interleaved_medians(variants: Dict[str, Callable[[], object]], rounds: int, device: torch.device,
                        per: int = 1) -> Dict[str, float]:
    """Median seconds (divided by ``per``) of each variant over ``rounds`` rounds, after one warm-up call each;
    within a round every variant runs once, so machine noise hits all alike."""
    for fn in variants.values():  # warm-up (allocator, cuDNN autotuning, lazy inits)
        timed(fn, device)
    times = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            times[name].append(timed(fn, device) / per)
    return {name: statistics.median(t) for name, t in times.items()}


def machine(device: torch.device, threads: int) -> str:
    """The GPU's name, or the CPU thread count."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {threads} threads"
