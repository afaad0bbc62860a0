"""This process's place among the processes torchrun started (RANK, WORLD_SIZE, LOCAL_RANK): ``current_rank()``.

Without torchrun a process is rank 0 of 1. Both jobs that spread work over processes read it here: optimize_image's
units and visualize.py's (``run.distributed``) and find_max_acts' images (``exemplars.checkpoint``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


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
