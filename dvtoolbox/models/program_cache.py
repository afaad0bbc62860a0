"""The prepared networks and compiled programs of one model, kept by their owner: ``ProgramCache``.

A loop's network step (``program.Program`` over a ``program.CapturedNetwork``) is worth keeping: a folded copy of
the model takes a forward pass to make, a compiled program minutes. Whoever runs many loops on one model (a job
over the batches of a whole layer, a ``FeatureViz`` over many ``visualize()`` calls) holds a ``ProgramCache`` and
hands it to each loop; the programs live as long as the cache and no longer. Nothing is kept at module level, so a
process that runs fifty models holds the programs of none of them once their owners are gone.

The cache is bounded: past ``capacity`` entries the least recently used one is dropped (a step whose objective is
a new Python callable on every call would otherwise add one entry per call).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Hashable, Optional, Tuple

import torch

from dvtoolbox.models.program import CapturedNetwork, Program

log = logging.getLogger(__name__)

CAPACITY = 8  # steps kept per model: a job uses one or two; a notebook trying objectives a few more


@dataclass(frozen=True)
class ProgramKey:
    """What makes two loop steps on one model different programs.

    kind: the step's kind ("unit", "objective", "render"); layer: the push layer, or the captured layers;
    what: what else the step's code depends on (the layouts it reads, the objective: a string, or the Objective
    itself, compared by identity, which the key then keeps alive); fold, compiled, precision: the
    ``device.Execution`` (engines compiled and graphs share a program); device: where it runs, e.g. "cuda:0".
    """

    kind: str
    layer: Hashable
    what: Hashable
    fold: bool
    compiled: bool
    precision: str
    device: str

    @classmethod
    def of(cls, kind: str, layer: Hashable, what: Hashable, execution, device: torch.device) -> "ProgramKey":
        """The key of a step run as ``execution`` (a resolved ``device.Execution``) on ``device``."""
        return cls(kind, layer, what, execution.fold, execution.compiled, execution.precision,
                   str(torch.device(device)))


class ProgramCache:
    """(network, program) per ``ProgramKey`` of one model, at most ``capacity`` of them (least recently used out);
    program may be None for an owner that keeps only the prepared network (``FeatureViz``).

    ``get(key, make)`` returns the entry of ``key``, made by ``make() -> (network, program)`` the first time.
    ``clear()`` drops every entry (their folded copies and compiled graphs with them).
    """

    def __init__(self, capacity: int = CAPACITY):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._entries: "OrderedDict[ProgramKey, Tuple[CapturedNetwork, Optional[Program]]]" = OrderedDict()

    def get(self, key: ProgramKey, make: Callable[[], Tuple[CapturedNetwork, Optional[Program]]]
            ) -> Tuple[CapturedNetwork, Optional[Program]]:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            return entry
        entry = self._entries[key] = make()
        if len(self._entries) > self.capacity:
            dropped, _ = self._entries.popitem(last=False)
            log.debug("program cache: dropped %s (capacity %d)", dropped, self.capacity)
        return entry

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: ProgramKey) -> bool:
        return key in self._entries

    def values(self):
        """The (network, program) entries, least recently used first."""
        return list(self._entries.values())
