"""Phase 2 of the loop: record obj, idxmax, norm, dist and std per image, and keep the best / majority / last
snapshots on the device. The statistics collect on the device (``DeviceRecord``) and reach the host every K
iterations and at the end (a (K, N, 6) table), where ``Recorder`` builds the FindResults; images stay on the
device until the end, in the image state's dtype (float64, as the original's numpy arrays).
"""

from __future__ import annotations

from typing import List, Sequence

import numpy as np
import torch

from dvtoolbox.regularizers.lr_policies import grad_dot
from dvtoolbox.optimize.params import FindParams
from dvtoolbox.optimize.results import META_GRAD0, FindResults

STAT_COLUMNS = ("obj", "idx", "norm", "dist", "std", "grad_norm")


def batch_statistics(acts: torch.Tensor, x: torch.Tensor, x0: torch.Tensor, grad: torch.Tensor,
                     units: torch.Tensor, signs: torch.Tensor, any_negative: bool = True) -> torch.Tensor:
    """(N, 6) float64 table of STAT_COLUMNS. acts (N, C, H, W) float32; x, x0 (N, 3, H, W) the image state; grad
    (N, 3, H, W) float32; units (N, 3) long; signs (N,) = sign(push_dir): idx is the flat index of the most extreme
    unit in the push direction. obj is the float32 activation (exact in float64); norm, dist and std are computed in
    float64 as numpy computed them; grad_norm is numpy's float32 ``dot(grad, grad)`` (0 exactly when the original's
    ``norm(grad) == 0``). any_negative: whether some sign is -1 (False skips the argmin pass; known on the host
    when the batch is made, so nothing is read back)."""
    n = acts.shape[0]
    obj = acts[torch.arange(n, device=acts.device), units[:, 0], units[:, 1], units[:, 2]]
    flat = acts.reshape(n, -1)
    idx = flat.argmax(dim=1)     # the first most extreme unit; argmin is the first largest of -acts, so no copy
    if any_negative:
        idx = torch.where(signs > 0, idx, flat.argmin(dim=1))
    flat_x = x.reshape(n, -1).to(torch.float64)
    columns = (obj, idx, torch.linalg.vector_norm(flat_x, dim=1),
               torch.linalg.vector_norm(flat_x - x0.reshape(n, -1).to(torch.float64), dim=1),
               flat_x.std(dim=1, correction=0), grad_dot(grad))
    return torch.stack([c.to(torch.float64) for c in columns], dim=1)


def _better(obj: np.float32, best: np.float32, push_dir: float) -> bool:
    """The original's strict ``obj > best`` in the push direction (``<`` when minimising)."""
    return obj > best if push_dir > 0 else obj < best


class DeviceRecord:
    """Phase 2 on the device: each iteration's (N, 6) statistics table is written into a buffer of ``rows``
    iterations, and the best / majority / last snapshots and the grad-0 stops are decided there, without reading
    anything back to the host; ``take_rows`` copies the buffer to the host (every ``rows`` iterations and at the
    end). The decisions are the host ``Recorder``'s, made on the same float32 obj values: best when
    ``obj > best_obj`` (``<`` when minimising, the first recorded iteration always), majority the first iteration
    whose idxmax is the pushed unit, last every recorded iteration; an image whose gradient is exactly 0 is recorded
    once more and then stops (``active``). Images are the image state's dtype (float64, as the original's numpy).

    sync_free: the snapshots as ``torch.where`` over every image (nothing read back: CUDA, CUDA graphs); otherwise
    (the CPU, where reading back costs nothing) only the images whose snapshot changes are copied.
    """

    def __init__(self, params: Sequence[FindParams], x0: torch.Tensor, layer_shape3d, rows: int,
                 sync_free: bool):
        n, device = len(params), x0.device
        self.maximise = torch.as_tensor([q.push_dir > 0 for q in params], device=device)
        self.unit_index = torch.as_tensor([int(np.ravel_multi_index(q.push_unit, tuple(layer_shape3d)))
                                           for q in params], dtype=torch.long, device=device)
        self.active = torch.ones(n, dtype=torch.bool, device=device)
        self.has_best = torch.zeros(n, dtype=torch.bool, device=device)
        self.best_obj = torch.zeros(n, dtype=torch.float32, device=device)
        self.has_majority = torch.zeros(n, dtype=torch.bool, device=device)
        self.best_x, self.majority_x, self.last_x = x0.clone(), x0.clone(), x0.clone()
        self.rows = torch.zeros((rows, n, len(STAT_COLUMNS)), dtype=torch.float64, device=device)
        self.position = torch.zeros(1, dtype=torch.long, device=device)
        self.sync_free = sync_free

    def record(self, stats: torch.Tensor, x: torch.Tensor) -> None:
        """Iteration's statistics (N, 6) float64 and cropped images x (N, 3, H, W): store, snapshot, stop."""
        recorded = self.active.clone()
        self.rows.index_copy_(0, self.position, stats.unsqueeze(0))
        self.position.add_(1)
        obj = stats[:, 0].to(torch.float32)
        better = recorded & (~self.has_best | torch.where(self.maximise, obj > self.best_obj, obj < self.best_obj))
        torch.where(better, obj, self.best_obj, out=self.best_obj)
        self.has_best.logical_or_(better)
        first = recorded & ~self.has_majority & (stats[:, 1].to(torch.long) == self.unit_index)
        self.has_majority.logical_or_(first)
        self._snapshot(self.best_x, better, x)
        self._snapshot(self.majority_x, first, x)
        self._snapshot(self.last_x, recorded, x)
        self.active.logical_and_(stats[:, 5] != 0)

    def _snapshot(self, buffer: torch.Tensor, rows: torch.Tensor, x: torch.Tensor) -> None:
        if self.sync_free:
            torch.where(rows.view(-1, *([1] * (x.dim() - 1))), x, buffer, out=buffer)
            return
        index = rows.nonzero().flatten()
        if len(index) == len(rows):
            buffer.copy_(x)
        elif len(index):
            buffer.index_copy_(0, index, x.index_select(0, index))

    def take_rows(self, count: int) -> np.ndarray:
        """The last ``count`` iterations' statistics as a host (count, N, 6) float64 array; the buffer restarts."""
        rows = self.rows[:count].cpu().numpy()
        self.position.zero_()
        return rows


class Recorder:
    """Builds one FindResults per image from the per-iteration statistics, on the host."""

    def __init__(self, params: Sequence[FindParams], x0: torch.Tensor, layer_shape3d):
        self.params = list(params)
        self.shape3d = tuple(layer_shape3d)
        self.results = [FindResults() for _ in self.params]
        for res, x0_n in zip(self.results, x0.cpu().numpy()):
            res.x0 = x0_n.copy()
        self.active = [True] * len(self.params)

    def update(self, ii: int, stats: Sequence[Sequence[float]]) -> None:
        """Append iteration ii (its (N, 6) statistics) for every active image, then stop those whose gradient is
        exactly 0 (the original's grad-0 failure)."""
        for n, (p, res, row) in enumerate(zip(self.params, self.results, stats)):
            if not self.active[n]:
                continue
            obj, idx = np.float32(row[0]), np.unravel_index(int(row[1]), self.shape3d)
            idxmax = tuple(int(i) for i in idx)
            res.ii.append(ii)
            res.obj.append(obj)
            res.idxmax.append(idxmax)
            res.ismax.append(idxmax == p.push_unit)
            res.norm.append(np.float64(row[2]))
            res.dist.append(np.float64(row[3]))
            res.std.append(np.float64(row[4]))
            if idxmax == p.push_unit and res.majority_obj is None:
                res.majority_obj, res.majority_ii = obj, ii
            if res.best_obj is None or _better(obj, res.best_obj, p.push_dir):
                res.best_obj, res.best_ii = obj, ii
            res.last_obj, res.last_ii = obj, ii
            if row[5] == 0:
                self.active[n] = False
                res.meta_result = META_GRAD0

    def finish(self, record: DeviceRecord) -> List[FindResults]:
        """The results, with the device's snapshots copied to the host as (3, H, W) arrays of the state's dtype
        (float64)."""
        best, majority, last = (t.cpu().numpy() for t in (record.best_x, record.majority_x, record.last_x))
        for n, res in enumerate(self.results):
            res.best_xx = best[n].copy() if res.best_obj is not None else None
            res.majority_xx = majority[n].copy() if res.majority_obj is not None else None
            res.last_xx = last[n].copy() if res.last_obj is not None else None
            res.finish()
        return self.results
