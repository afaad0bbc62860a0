"""FindResults: the record of one optimization, with the original's fields, printed layout and trimming.

Per-iteration lists: ii, obj, idxmax (unit tuples), ismax, norm, dist, std. Snapshots: x0, best_*, majority_*
(the first iteration at which the pushed unit is the most extreme of its layer in the push direction), last_*.
Images (x0, *_xx) are numpy float64 arrays (3, H, W): mean-subtracted, 0..255 scale, model channel order, as the
original's numpy state held them. obj values are numpy float32 scalars (the network's float32 output, as Caffe's
blobs gave them); norm, dist and std numpy float64 scalars, as numpy computed them; idxmax tuples of ints.
Instances pickle as plain objects; ``pickle.load`` gives them back wherever dvtoolbox is installed.
"""

from __future__ import annotations

import numpy as np

from dvtoolbox.optimize.py2_text import py2_str

META_GRAD0 = "Metaresult: grad 0 failure"
META_MAJORITY_SUCCESS = "Metaresult: majority success"
META_MAJORITY_FAILURE = "Metaresult: majority failure"


class FindResults:
    """What one optimization found (see the module docstring).

    ``best_ii``, ``last_ii`` and ``majority_ii`` are set on an instance only once reached, as the original set them
    (a majority failure has no ``majority_ii`` line in info.txt and no such key in the pickle); reading one that was
    never set gives None.
    """

    majority_ii = None
    best_ii = None
    last_ii = None

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
        self.best_obj = None
        self.best_xx = None
        self.last_obj = None
        self.last_xx = None
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
        """The original's printed layout: sorted names, values as Python 2's ``str`` printed them."""
        lines = ["FindResults:"]
        for key in sorted(self.__dict__):
            lines.append("%30s: %s" % (key, _format_value(self.__dict__[key])))
        return "\n".join(lines) + "\n"


def _describe_array(val: np.ndarray) -> str:
    """'(3, 227, 227) array [17.6405234597, 4.00157208367, ...]': the shape and the first two values' str."""
    flat = val.reshape(-1)
    return "%s array [%s, %s, ...]" % (py2_str(val.shape), py2_str(flat[0]), py2_str(flat[1]))


def _format_value(val) -> str:
    """A long list as its first two and last two items' str; arrays described; anything else its Python 2 str."""
    if isinstance(val, list) and len(val) > 4:
        return "[%s, %s, ..., %s, %s]" % tuple(py2_str(v) for v in (val[0], val[1], val[-2], val[-1]))
    if isinstance(val, np.ndarray):
        return _describe_array(val)
    return py2_str(val)
