"""The histograms' bin edges of a find_max_acts run, from a calibration pass over the first images of the list.

The calibration set is the first ``min(CALIBRATION_IMAGES, len(list))`` images of the list (unreadable ones
skipped), whatever the rank and wherever a resumed run takes up, so the edges depend on the list and the model
alone, never on the order in which a rank sees the data. Under torchrun only rank 0 runs the pass and sends its
edges to every rank (``checkpoint.share_edges``); a resumed run takes the edges its checkpoint holds and runs no
pass. The edges rule itself is ``histogram.calibrated_edges``.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, Mapping, Tuple

import numpy as np
import torch

from dvtoolbox.exemplars.histogram import CALIBRATION_IMAGES, calibrated_edges
from dvtoolbox.exemplars.tracker import unit_values


def calibration_indices(images: int, count: int = CALIBRATION_IMAGES) -> range:
    """The list indices of the calibration images: 0 .. min(count, images) - 1."""
    return range(min(count, images))


def calibrate(batches: Iterable[Tuple[torch.Tensor, torch.Tensor, list]],
              forward: Callable[[torch.Tensor], Mapping[str, torch.Tensor]], units: Mapping[str, int],
              bins: int) -> Dict[str, np.ndarray]:
    """{layer: edges (U, bins + 1) float32} from the unit values of the calibration batches.

    batches: ``data.image_batches``' (inputs (B, 3, H, W), indices (B,), errors: "" where read); forward(inputs of
    the readable images) -> {layer: canonical output}; units: {layer: U}, in order."""
    collected = {name: [] for name in units}
    for inputs, _, errors in batches:
        ok = torch.tensor([not e for e in errors], dtype=torch.bool)
        if not ok.any():
            continue
        outputs = forward(inputs[ok])
        for name in units:
            collected[name].append(unit_values(outputs[name])[0])
    return {name: calibrated_edges(torch.cat(collected[name]) if collected[name] else torch.zeros(0, count), bins)
            for name, count in units.items()}
