"""Showing a batch of visualisations side by side with matplotlib (imported only here, and only when called).

``show_images(images, labels)`` draws one panel per image. With ``path`` it writes a PNG there; without one it
opens a window when matplotlib has an interactive backend (or an inline one, in a notebook), and otherwise (no
display: Agg, headless) writes ``featureviz_<k>.png`` in the current directory, never overwriting a file. pyplot is
used only to show; saving uses a bare ``Figure`` (Agg), so the caller's matplotlib backend is never changed.
"""

from __future__ import annotations

import logging
import os
from typing import Optional, Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)

NON_INTERACTIVE_BACKENDS = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}


def as_image_batch(images) -> np.ndarray:
    """(N, H, W, C) numpy, a sequence of (H, W, C), an (H, W, C) array, or an (N, C, H, W) tensor -> (N, H, W, C)
    float64 in [0, 1] (clipped), C = 3 or 4."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().permute(0, 2, 3, 1).numpy()
    if isinstance(images, (list, tuple)):
        images = np.stack([np.asarray(img) for img in images])
    arr = np.asarray(images, dtype=np.float64)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"images must be (N, H, W, 3|4) (or a list of (H, W, 3|4)), got shape {arr.shape}")
    return np.clip(arr, 0.0, 1.0)


def _has_display() -> bool:
    import matplotlib

    return matplotlib.get_backend().lower() not in NON_INTERACTIVE_BACKENDS


def _free_path(directory: str = ".", stem: str = "featureviz") -> str:
    k = 0
    while os.path.exists(os.path.join(directory, f"{stem}_{k}.png")):
        k += 1
    return os.path.join(directory, f"{stem}_{k}.png")


def show_images(images, labels: Optional[Sequence[str]] = None, path: Optional[str] = None,
                title: Optional[str] = None, panel_inches: float = 3.0) -> Optional[str]:
    """One panel per image, ``labels[i]`` above panel i. Returns the PNG path written, or None when shown in a
    window (see the module docstring)."""
    batch = as_image_batch(images)
    n = batch.shape[0]
    if labels is not None and len(labels) != n:
        raise ValueError(f"got {len(labels)} labels for {n} images")
    display = path is None and _has_display()
    if display:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(panel_inches * n, panel_inches + 0.4))
    else:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(panel_inches * n, panel_inches + 0.4))
    axes = fig.subplots(1, n, squeeze=False)[0]
    for i, ax in enumerate(axes):
        ax.imshow(batch[i], interpolation="nearest")
        ax.set_axis_off()
        if labels is not None:
            ax.set_title(str(labels[i]), fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if display:
        import matplotlib.pyplot as plt

        plt.show()
        return None
    path = path or _free_path()
    fig.savefig(path, dpi=100)
    log.info("show_images: no display, wrote %s", path)
    return path
