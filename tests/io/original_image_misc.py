"""The original's image scaling (image_misc.norm01 / norm01c), restated in numpy: the reference the writers are
checked against."""

import numpy as np


def original_norm01(arr: np.ndarray) -> np.ndarray:
    arr = arr.copy()
    arr -= arr.min()
    arr /= arr.max() + 1e-10
    return arr


def original_norm01c(arr: np.ndarray, center) -> np.ndarray:
    arr = arr.copy()
    arr -= center
    arr /= max(2 * arr.max(), -2 * arr.min()) + 1e-10
    arr += .5
    return arr
