"""Splitting units across processes started by torchrun (torch.distributed is the engine: no launcher of our own).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK (``run.ranks.current_rank``); each rank takes units[rank::world], one GPU per rank
(cuda:LOCAL_RANK) when the job runs on CUDA, and the process group (NCCL on GPUs, gloo on CPUs) is used for one
barrier at the end, before rank 0 merges the per-rank summaries. Without torchrun: rank 0 of 1, no process group.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from dvtoolbox.run.ranks import Rank


def start(device: torch.device, rank: Rank) -> None:
    """Join the process group (NCCL for CUDA, gloo otherwise) when started by torchrun."""
    if rank.is_distributed and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def barrier_and_stop(device: torch.device, rank: Rank) -> None:
    """Wait for every rank, then leave the process group."""
    if rank.is_distributed and dist.is_initialized():
        if device.type == "cuda":
            dist.barrier(device_ids=[device.index or 0])
        else:
            dist.barrier()
        dist.destroy_process_group()
