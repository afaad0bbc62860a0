"""What the benchmarks share: wall-clock timing that waits for the GPU, interleaved rounds, the machine's name."""

from __future__ import annotations

import statistics
import time
from typing import Callable, Dict, List, Tuple

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


def interleaved_times(variants: Dict[str, Callable[[], object]], rounds: int, device: torch.device,
                      per: int = 1) -> Dict[str, List[float]]:
    """Seconds (divided by ``per``) of each variant in each of ``rounds`` rounds, after one warm-up call each;
    within a round every variant runs once, in an order that alternates between rounds, so machine noise hits all
    alike."""
    for fn in variants.values():  # warm-up (allocator, cuDNN autotuning, lazy inits, compilation)
        timed(fn, device)
    times = {name: [] for name in variants}
    names = list(variants)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else reversed(names)):
            times[name].append(timed(variants[name], device) / per)
    return times


def interleaved_medians(variants: Dict[str, Callable[[], object]], rounds: int, device: torch.device,
                        per: int = 1) -> Dict[str, float]:
    """Median seconds (divided by ``per``) of each variant over ``rounds`` interleaved rounds
    (``interleaved_times``)."""
    return {name: statistics.median(t) for name, t in interleaved_times(variants, rounds, device, per).items()}


def medians_and_minima(times: Dict[str, List[float]]) -> Dict[str, Tuple[float, float]]:
    """(median, minimum) of each variant's times. On a shared machine other work only ever adds time, so the
    minimum over many short interleaved rounds is the steadier estimate of the work itself."""
    return {name: (statistics.median(t), min(t)) for name, t in times.items()}


def machine(device: torch.device, threads: int) -> str:
    """The GPU's name, or the CPU thread count."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {threads} threads"
