"""Splitting units across processes started by torchrun (torch.distributed is the engine: no launcher of our own).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; each rank takes units[rank::world], one GPU per rank
(cuda:LOCAL_RANK) when the job runs on CUDA, and the process group (NCCL on GPUs, gloo on CPUs) is used for one
barrier at the end, before rank 0 merges the per-rank summaries. Without torchrun: rank 0 of 1, no process group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Rank:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_distributed(self) -> bool:
        return self.world > 1


def current_rank() -> Rank:
    """This process's place among torchrun's processes (rank 0 of 1 when not started by torchrun)."""
    env = os.environ
    return Rank(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


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
