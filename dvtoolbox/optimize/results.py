"""FindResults: the record of one optimization, with the original's fields, printed layout and trimming.

Per-iteration lists: ii, obj, idxmax (unit tuples), ismax, norm, dist, std. Snapshots: x0, best_*, majority_*
(the first iteration at which the pushed unit is the most extreme of its layer in the push direction), last_*.
Images (x0, *_xx) are numpy float32 arrays (3, H, W): mean-subtracted, 0..255 scale, model channel order.
Instances pickle as plain objects; ``pickle.load`` gives them back wherever dvtoolbox is installed.
"""

from __future__ import annotations

import numbers

import numpy as np

OBJ_FIELDS = ("obj", "best_obj", "last_obj", "majority_obj")
META_GRAD0 = "Metaresult: grad 0 failure"
META_MAJORITY_SUCCESS = "Metaresult: majority success"
META_MAJORITY_FAILURE = "Metaresult: majority failure"


class FindResults:
    """What one optimization found (see the module docstring)."""

    def __init__(self):
        self.ii = []
        self.obj = []
        self.idxmax = []
        self.ismax = []
        self.norm = []
        self.dist = []
        self.std = []
        self.x0 = None
        self.majority_obj = None
        self.majority_xx = None
        self.majority_ii = None
        self.best_obj = None
        self.best_xx = None
        self.best_ii = None
        self.last_obj = None
        self.last_xx = None
        self.last_ii = None
        self.meta_result = None

    def finish(self) -> None:
        """Set meta_result as the original does when the loop ends without a grad-0 failure."""
        if self.meta_result is None:
            self.meta_result = META_MAJORITY_SUCCESS if self.majority_obj is not None else META_MAJORITY_FAILURE

    def trim_arrays(self) -> None:
        """Replace every array by a short description, in place (the original's info.pkl)."""
        for key, val in list(self.__dict__.items()):
            if isinstance(val, np.ndarray):
                self.__dict__[key] = "Trimmed " + _describe_array(val)

    def __str__(self) -> str:
        lines = ["FindResults:"]
        for key in sorted(self.__dict__):
            lines.append("%30s: %s" % (key, _format_value(key, self.__dict__[key])))
        return "\n".join(lines) + "\n"


def _describe_array(val: np.ndarray) -> str:
    flat = val.reshape(-1)
    return "%s array [%s, %s, ...]" % (val.shape, _fmt_number(flat[0], "%.12g"), _fmt_number(flat[1], "%.12g"))


def _format_value(key: str, val) -> str:
    number_fmt = "%g" if key in OBJ_FIELDS else "%.12g"
    if isinstance(val, list) and len(val) > 4:
        return "[%s, %s, ..., %s, %s]" % tuple(_fmt_item(v, number_fmt) for v in (val[0], val[1], val[-2], val[-1]))
    if isinstance(val, list):
        return "[%s]" % ", ".join(_fmt_item(v, number_fmt) for v in val)
    if isinstance(val, np.ndarray):
        return _describe_array(val)
    return _fmt_item(val, number_fmt)


def _fmt_item(val, number_fmt: str) -> str:
    if isinstance(val, (numbers.Real, np.floating)) and not isinstance(val, (bool, np.bool_, numbers.Integral)):
        return _fmt_number(val, number_fmt)
    return str(val)


def _fmt_number(val, number_fmt: str) -> str:
    if isinstance(val, (np.integer, numbers.Integral)) and not isinstance(val, bool):
        return str(int(val))
    return number_fmt % float(val)
