"""Reading pickles that hold data only: the original toolbox's Python 2 files (``info.pkl``, ``maxes.pkl``) and
dvtoolbox's own ``info.pkl``.

Unpickling can run arbitrary code: a pickle names callables that the loader calls. ``RestrictedUnpickler`` resolves
only the names of an allow-list, every other name refused (one-line ``UsageError``) before anything is imported or
called. ``numpy_globals()`` is the part every such file needs: numpy's array / dtype / scalar reconstructors under
numpy 1's and numpy 2's module names, Python 2's and 3's ``copy_reg._reconstructor`` and ``object``, and
``_codecs.encode`` limited to latin1 (how Python 3 writes bytes, such as numpy's data, below protocol 3); each reader
adds its own classes.
"""

from __future__ import annotations

import copyreg
import pickle
from typing import Any, BinaryIO, Dict, Mapping, Tuple

import numpy as np

from dvtoolbox.errors import UsageError

Allowed = Mapping[Tuple[str, str], Any]


def numpy_reconstructors() -> Dict[str, Any]:
    """numpy's own unpickling callables, taken from what this numpy's objects reduce to (no private import, so no
    ``numpy.core`` deprecation warning): ``_reconstruct`` (arrays, protocol < 5), ``_frombuffer`` (arrays, protocol
    5) and ``scalar`` (numpy scalars)."""
    array = np.zeros(1)
    found = {
        "_reconstruct": array.__reduce__()[0],
        "_frombuffer": array.__reduce_ex__(5)[0],
        "scalar": np.float32(0).__reduce__()[0],
    }
    for name, func in found.items():
        if getattr(func, "__name__", None) != name:
            raise ImportError(f"numpy {np.__version__} pickles with {func!r}, expected a function named {name}")
    return found


def latin1_encode(text: str, encoding: str) -> bytes:
    """``_codecs.encode`` restricted to what Python 3's pickle writes: ``(text, 'latin1')``."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r} (only latin1 occurs in pickles)")
    return text.encode("latin-1")


def numpy_globals() -> Dict[Tuple[str, str], Any]:
    """The allow-list every data pickle needs (see the module docstring): {(module, name): object}."""
    funcs = numpy_reconstructors()
    allowed: Dict[Tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                           ("_codecs", "encode"): latin1_encode}
    for core in ("numpy.core", "numpy._core"):
        allowed[(core + ".multiarray", "_reconstruct")] = funcs["_reconstruct"]
        allowed[(core + ".multiarray", "scalar")] = funcs["scalar"]
        allowed[(core + ".multiarray", "ndarray")] = np.ndarray
        allowed[(core + ".multiarray", "dtype")] = np.dtype
        allowed[(core + ".numeric", "_frombuffer")] = funcs["_frombuffer"]
    for module in ("copy_reg", "copyreg"):  # Python 2 and 3 spellings
        allowed[(module, "_reconstructor")] = copyreg._reconstructor
    for module in ("__builtin__", "builtins"):
        allowed[(module, "object")] = object
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only ``allowed``; a refusal names ``path`` and says what the file may name
    (``may_name``, e.g. "FindParams, FindResults and numpy arrays"). Python 2 ``str`` is read as latin1, so names
    and numpy's raw data come through byte for byte."""

    def __init__(self, file: BinaryIO, path: str, allowed: Allowed, what: str, may_name: str):
        super().__init__(file, encoding="latin1")
        self.path, self.allowed, self.what, self.may_name = path, allowed, what, may_name

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            refused = f"{module}.{name}"
            refused = refused if refused.isprintable() else ascii(refused)  # one line, whatever the file says
            raise UsageError(f"{self.path}: refusing to load the global {refused}: {self.what} may only name "
                             f"{self.may_name} (unpickling runs code)") from None
