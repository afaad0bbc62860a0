"""Phase 2 of the loop: record obj, idxmax, norm, dist and std per image, and keep the best / majority / last
snapshots on the device. One host transfer per iteration (a small (N, 6) table); images stay on the device until
the end, in the image state's dtype (float64, as the original's numpy arrays).
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
                     units: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
    """(N, 6) float64 table of STAT_COLUMNS. acts (N, C, H, W) float32; x, x0 (N, 3, H, W) the image state; grad
    (N, 3, H, W) float32; units (N, 3) long; signs (N,) = sign(push_dir): idx is the flat index of the most extreme
    unit in the push direction. obj is the float32 activation (exact in float64); norm, dist and std are computed in
    float64 as numpy computed them; grad_norm is numpy's float32 ``dot(grad, grad)`` (0 exactly when the original's
    ``norm(grad) == 0``)."""
    n = acts.shape[0]
    obj = acts[torch.arange(n, device=acts.device), units[:, 0], units[:, 1], units[:, 2]]
    idx = (acts * signs[:, None, None, None]).reshape(n, -1).argmax(dim=1)
    flat_x = x.reshape(n, -1).to(torch.float64)
    columns = (obj, idx, torch.linalg.vector_norm(flat_x, dim=1),
               torch.linalg.vector_norm(flat_x - x0.reshape(n, -1).to(torch.float64), dim=1),
               flat_x.std(dim=1, correction=0), grad_dot(grad))
    return torch.stack([c.to(torch.float64) for c in columns], dim=1)


def _better(obj: np.float32, best: np.float32, push_dir: float) -> bool:
    """The original's strict ``obj > best`` in the push direction (``<`` when minimising)."""
    return obj > best if push_dir > 0 else obj < best


class Recorder:
    """Builds one FindResults per image from the per-iteration statistics."""

    def __init__(self, params: Sequence[FindParams], x0: torch.Tensor, layer_shape3d):
        self.params = list(params)
        self.shape3d = tuple(layer_shape3d)
        self.results = [FindResults() for _ in self.params]
        for res, x0_n in zip(self.results, x0.cpu().numpy()):
            res.x0 = x0_n.copy()
        self.active = [True] * len(self.params)
        self.best_x = x0.clone()
        self.majority_x = x0.clone()
        self.last_x = x0.clone()

    def update(self, ii: int, stats: List[List[float]], x: torch.Tensor) -> None:
        """Append iteration ii for every active image and refresh its snapshots (x: the cropped images)."""
        best, majority = [], []
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
                majority.append(n)
            if res.best_obj is None or _better(obj, res.best_obj, p.push_dir):
                res.best_obj, res.best_ii = obj, ii
                best.append(n)
            res.last_obj, res.last_ii = obj, ii
        self._snapshot(self.best_x, best, x)
        self._snapshot(self.majority_x, majority, x)
        self._snapshot(self.last_x, [n for n, on in enumerate(self.active) if on], x)

    def stop_zero_gradients(self, stats: List[List[float]]) -> None:
        """Stop every active image whose gradient is exactly 0 (the original's grad-0 failure)."""
        for n, row in enumerate(stats):
            if self.active[n] and row[5] == 0:
                self.active[n] = False
                self.results[n].meta_result = META_GRAD0

    @staticmethod
    def _snapshot(buffer: torch.Tensor, rows: List[int], x: torch.Tensor) -> None:
        if rows:
            index = torch.as_tensor(rows, device=x.device)
            buffer[index] = x[index]

    def finish(self) -> List[FindResults]:
        """The results, with images copied to the host as (3, H, W) arrays of the state's dtype (float64)."""
        best, majority, last = (t.cpu().numpy() for t in (self.best_x, self.majority_x, self.last_x))
        for n, res in enumerate(self.results):
            res.best_xx = best[n].copy() if res.best_obj is not None else None
            res.majority_xx = majority[n].copy() if res.majority_obj is not None else None
            res.last_xx = last[n].copy() if res.last_obj is not None else None
            res.finish()
        return self.results
