"""Checkpoints and shards of a find_max_acts run: part files, torchrun ranks, the merge at the end.

Each process (rank r of W under torchrun; rank 0 of 1 otherwise) takes the images ``r::W`` of the list, in order,
and every K batches writes its running top N atomically to its part file, ``<outfile>.part`` (one process) or
``<outfile>.rank<r>of<W>.part``: a tracker file (``tracker``'s format) whose meta adds ``complete`` (false while
it runs), ``images_done`` (how many of this rank's images are counted, a prefix of them), ``shard`` [r, W] and
``identity`` (the image list, N, layers and their reading, the model), so that a resumed run (``--resume``) takes up
exactly after the last image it counted: none counted twice, none missed. A finished rank marks its part
complete; after a barrier (torch.distributed, gloo: a barrier, and at the start rank 0's histogram edges,
``share_edges``; no other data goes through it) rank 0 merges every part (``tracker.merge``: exact, the result of one
process), writes the outfile and removes the parts. The parts must be on a file system every rank sees.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist

from dvtoolbox.errors import UsageError
from dvtoolbox.exemplars.data import ImageList
from dvtoolbox.exemplars.tracker import LayerMaxes, load_maxes, merge, save_maxes
from dvtoolbox.run.ranks import Rank


def part_path(outfile: str, shard: Rank) -> str:
    return outfile + (f".rank{shard.rank}of{shard.world}.part" if shard.is_distributed else ".part")


def list_digest(images: ImageList) -> str:
    """A short fingerprint of the image list (paths and labels, in order; for tar shards also each image's data
    offset and size in its shard, so a shard rewritten under the same names does not pass)."""
    listed = [images.paths, images.labels]
    if images.members is not None:
        listed.append([[m.offset, m.size] if m is not None else None for m in images.members])
    text = json.dumps(listed)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def save_part(path: str, maxes: Dict[str, LayerMaxes], images: ImageList, identity: dict, shard: Rank,
              images_done: int, unreadable: int, skipped_nan: int, complete: bool) -> None:
    save_maxes(path, maxes, images, {"complete": complete, "images_done": images_done, "unreadable": unreadable,
                                     "skipped_nan": skipped_nan, "shard": [shard.rank, shard.world],
                                     "identity": identity})


def load_part(path: str, identity: dict, shard: Rank) -> Tuple[dict, Dict[str, LayerMaxes]]:
    """A part file of this run and shard (else a one-line UsageError saying what differs)."""
    meta, _, maxes = load_maxes(path)
    if meta.get("shard") != [shard.rank, shard.world] or "identity" not in meta:
        raise UsageError(f"{path} is not a part file of rank {shard.rank} of {shard.world}; remove it")
    theirs = meta["identity"]
    differ = sorted(k for k in set(identity) | set(theirs) if identity.get(k) != theirs.get(k))
    if differ:
        raise UsageError(f"{path} was written by a run with another {', '.join(differ)}; remove it, or give brave "
                         "(without resume) to start again", "resume", "brave")
    return meta, maxes


def barrier(shard: Rank) -> None:
    """Wait for every rank (torch.distributed with gloo, joined on first use); nothing when not distributed."""
    if not shard.is_distributed:
        return
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    dist.barrier()


def share_edges(shard: Rank, edges: Optional[Mapping[str, np.ndarray]], shapes: Mapping[str, Tuple[int, int]]
                ) -> Dict[str, np.ndarray]:
    """Rank 0's histogram edges {layer: (U, B+1) float32} in every rank (a gloo broadcast; the other ranks pass
    None); ``edges`` itself when not distributed. shapes: {layer: (U, B+1)}, in order."""
    if not shard.is_distributed:
        return dict(edges)
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    shared = {}
    for name, shape in shapes.items():
        tensor = (torch.from_numpy(np.ascontiguousarray(edges[name], np.float32)) if shard.rank == 0
                  else torch.zeros(shape, dtype=torch.float32))
        dist.broadcast(tensor, src=0)
        shared[name] = tensor.numpy()
    return shared


def leave(shard: Rank) -> None:
    if shard.is_distributed and dist.is_initialized():
        dist.destroy_process_group()


def merge_parts(outfile: str, world: int, identity: dict) -> Tuple[Dict[str, LayerMaxes], dict]:
    """Rank 0: every rank's complete part merged; returns the merged maxes and the summed counts."""
    merged, counts = None, {"images_done": 0, "unreadable": 0, "skipped_nan": 0}
    for rank in range(world):
        shard = Rank(rank, world)
        meta, maxes = load_part(part_path(outfile, shard), identity, shard)
        if not meta.get("complete"):
            raise UsageError(f"{part_path(outfile, shard)} is not complete: rank {rank} did not finish")
        merged = maxes if merged is None else merge(merged, maxes)
        for key in counts:
            counts[key] += int(meta.get(key, 0))
    return merged, counts


def remove_parts(paths: List[str]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
