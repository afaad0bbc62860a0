"""Values as the original's Python 2 ``print`` wrote them into info.txt: ``py2_str(v)`` is ``str(v)`` and
``py2_repr(v)`` is ``repr(v)`` under Python 2.7 with the numpy of 2015 (before numpy 1.14 changed scalar printing).

The rules that differ from Python 3:

- a float prints with 12 significant digits under ``str`` (``'%.12g'``, then ``.0`` when the text is all digits,
  and the exponent form already from 12 integer digits on); ``repr`` of a Python float is the shortest round trip,
  as in Python 3;
- numpy scalars print with fixed precisions (numpy's FLOATPREC_STR / _REPR): float32 ``str`` 6 and ``repr`` 8
  digits, float64 ``str`` 12 and ``repr`` 17 digits, each with the same ``.0`` rule;
- containers print their items' ``repr``; a dict lists its items in Python 2's hash-table order, which depends on
  the keys' Python 2 hashes and their insertion order (emulated here for str and int keys: an lr_params dict of
  two or three keys prints in that order, not in the order it was typed).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Dict, List, Tuple

import numpy as np

_NUMPY_DIGITS = {  # dtype -> (str digits, repr digits), numpy < 1.14
    np.dtype(np.float16): (3, 5),
    np.dtype(np.float32): (6, 8),
    np.dtype(np.float64): (12, 17),
}
_PY2_FLOAT_STR_DIGITS = 12
_MASK64 = (1 << 64) - 1


def _with_dot_zero(text: str) -> str:
    """Python 2 and old numpy append '.0' when a float's text holds nothing but a sign and digits."""
    body = text[1:] if text.startswith("-") else text
    return text + ".0" if body.isdigit() else text


def _float_text(value: float, digits: int) -> str:
    """numpy's old scalar printing: C's ``%.*g``, then ``.0`` when all digits."""
    return _with_dot_zero("%.*g" % (digits, value))


def _python2_float_str(value: float) -> str:
    """Python 2.7's ``str(float)``: 12 significant digits like ``%.12g`` and ``.0`` when all digits, but with the
    exponent form from 12 integer digits on (CPython's 'g' with ADD_DOT_0 switches at ``decpt > precision - 1``:
    ``str(123456789012.0)`` is ``'1.23456789012e+11'``)."""
    if not math.isfinite(value) or value == 0:
        return _float_text(value, _PY2_FLOAT_STR_DIGITS)
    mantissa, exponent = ("%.*e" % (_PY2_FLOAT_STR_DIGITS - 1, value)).split("e")
    if int(exponent) + 1 > _PY2_FLOAT_STR_DIGITS - 1:
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{exponent[0]}{int(exponent[1:]):02d}"
    return _float_text(value, _PY2_FLOAT_STR_DIGITS)


def py2_str(value: Any) -> str:
    """``str(value)`` as Python 2.7 with 2015's numpy printed it (see the module docstring)."""
    if isinstance(value, np.floating):
        return _float_text(float(value), _NUMPY_DIGITS.get(value.dtype, (12, 17))[0])
    if isinstance(value, float):
        return _python2_float_str(value)
    if isinstance(value, (list, tuple, dict)):
        return py2_repr(value)
    return py2_repr(value) if isinstance(value, (bool, np.bool_, numbers.Integral)) else str(value)


def py2_repr(value: Any) -> str:
    """``repr(value)`` as Python 2.7 with 2015's numpy printed it (see the module docstring)."""
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, np.floating):
        return _float_text(float(value), _NUMPY_DIGITS.get(value.dtype, (12, 17))[1])
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, tuple):
        items = [py2_repr(v) for v in value]
        return "(" + items[0] + ",)" if len(items) == 1 else "(" + ", ".join(items) + ")"
    if isinstance(value, list):
        return "[" + ", ".join(py2_repr(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{py2_repr(k)}: {py2_repr(v)}" for k, v in py2_dict_items(value)) + "}"
    return repr(value)


# ---------------------------------------------------------------------------------------------------- dict order


def _c_long(x: int) -> int:
    """Wrap to a signed 64-bit C long."""
    x &= _MASK64
    return x - (1 << 64) if x >> 63 else x


def py2_hash(key: Any) -> int:
    """Python 2.7's hash of a str or int key on a 64-bit machine (no -R randomisation); None for other keys."""
    if isinstance(key, bool) or not isinstance(key, (str, numbers.Integral)):
        return None
    if isinstance(key, numbers.Integral):
        h = _c_long(int(key))
        return -2 if h == -1 else h
    data = key.encode("latin-1", errors="replace")
    if not data:
        return 0
    x = data[0] << 7
    for byte in data:
        x = _c_long(1000003 * x) ^ byte
    x = _c_long(x ^ len(data))
    return -2 if x == -1 else x


def py2_dict_items(d: Dict) -> List[Tuple[Any, Any]]:
    """The items of ``d`` in the order Python 2.7 iterates the same dict written as a literal (the original's
    ``eval`` of ``--lr-params``), its items inserted in ``d``'s order: a table of 8 slots (presized to the smallest
    power of two above the item count when there are more than 5), CPython 2.7's probe sequence, and its resizes.
    Dicts with keys other than str / int keep their own order."""
    hashes = [py2_hash(k) for k in d]
    if any(h is None for h in hashes):
        return list(d.items())
    slots: List = [None] * (_table_size(len(d)) if len(d) > 5 else 8)  # BUILD_MAP's _PyDict_NewPresized
    used = 0
    for key, h in zip(d, hashes):
        _insert(slots, key, h)
        used += 1
        if used * 3 >= len(slots) * 2:  # ma_fill * 3 >= (mask + 1) * 2 (no deletions: fill == used)
            old = [entry for entry in slots if entry is not None]
            slots = [None] * _table_size(4 * used)
            for k, hk in old:
                _insert(slots, k, hk)
    return [(k, d[k]) for k, _ in (entry for entry in slots if entry is not None)]


def _table_size(minused: int) -> int:
    """dictresize's new size: the smallest power of two above ``minused``, at least 8."""
    size = 8
    while size <= minused:
        size <<= 1
    return size


def _insert(slots: List, key: Any, h: int) -> None:
    """Put (key, h) in the first free slot of CPython 2.7's probe sequence for h."""
    mask = len(slots) - 1
    i = h & mask
    perturb = h & _MASK64
    while slots[i & mask] is not None:
        i = (i << 2) + i + perturb + 1
        perturb >>= 5
    slots[i & mask] = (key, h)
