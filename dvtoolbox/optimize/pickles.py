"""Reading ``info.pkl`` / ``info_big.pkl``: the original toolbox's Python 2 pickles and dvtoolbox's own.

Both hold one pickled pair ``(params, results)``. The original's (``optimize/gradient_optimizer.py``, written with
``pickle.dump(..., protocol=-1)`` under Python 2, i.e. protocol 2) reference ``optimize.gradient_optimizer.FindParams``
/ ``FindResults`` and numpy through ``numpy.core.*``; dvtoolbox's reference ``dvtoolbox.optimize.params.FindParams``
/ ``dvtoolbox.optimize.results.FindResults`` and numpy through ``numpy._core.*`` (numpy 2) or ``numpy.core.*``
(numpy 1). ``load_info`` gives this project's FindParams and FindResults for either.

Unpickling can run arbitrary code: a pickle names callables that the loader calls. So the loader resolves only an
allowlist of names (``dvtoolbox.io.restricted_pickle``: numpy's array / dtype / scalar reconstructors, a few harmless
builtins, ``_codecs.encode`` limited to latin1; here also the two classes under both spellings, ``set`` and
``frozenset``); any other name is refused before anything is imported or called.
"""

from __future__ import annotations

import io
from dataclasses import fields
from typing import Any, Dict, Tuple


from dvtoolbox.errors import UsageError
from dvtoolbox.io.restricted_pickle import RestrictedUnpickler, numpy_globals
from dvtoolbox.optimize.params import FindParams
from dvtoolbox.regularizers.settings import PERCENTILE_FIELDS
from dvtoolbox.optimize.results import FindResults

EXPECTED = "a pickled (FindParams, FindResults) pair, as optimize_image.py writes to info.pkl / info_big.pkl"
# The original's class defaults for these were None, meaning off; dvtoolbox's "off" is 0.
OFF_WHEN_NONE_FIELDS = ("blur_radius",) + PERCENTILE_FIELDS


class _OriginalFindParams:
    """Stand-in for ``optimize.gradient_optimizer.FindParams``: BUILD fills ``__dict__`` with the original's state."""


class _OriginalFindResults:
    """Stand-in for ``optimize.gradient_optimizer.FindResults``: BUILD fills ``__dict__`` with the original's state."""


def _allowed_globals() -> Dict[Tuple[str, str], Any]:
    allowed = numpy_globals()
    allowed.update({
        ("optimize.gradient_optimizer", "FindParams"): _OriginalFindParams,
        ("optimize.gradient_optimizer", "FindResults"): _OriginalFindResults,
        ("dvtoolbox.optimize.params", "FindParams"): FindParams,
        ("dvtoolbox.optimize.results", "FindResults"): FindResults,
    })
    for module in ("__builtin__", "builtins"):
        for builtin in (set, frozenset):
            allowed[(module, builtin.__name__)] = builtin
    return allowed


_ALLOWED_GLOBALS = _allowed_globals()


def load_info(path: str) -> Tuple[FindParams, FindResults]:
    """Read ``info.pkl`` or ``info_big.pkl`` of the original toolbox (Python 2) or of dvtoolbox.

    Returns ``(params, results)`` as this project's classes. Original params become a validated FindParams (None in
    blur_radius and the four percentile fields, the original's "off", becomes 0; unknown or missing fields are an
    error). Original results become a FindResults whose ``__dict__`` is the original's state exactly: numpy float32
    ``obj`` entries, float64 images (3, H, W) in the model's channel order (in info.pkl: "Trimmed ..." strings),
    idxmax tuples of numpy int64, and no ``majority_ii`` when the majority was never reached. dvtoolbox's own objects
    come back as they were pickled, without re-validation (start_at may name a .npy file that is gone).

    Unpickling runs code named in the file, so only an allowlist of names is resolved (see the module docstring).
    Raises UsageError (one line, naming ``path``) for a file that cannot be read, is not such a pickle, names a
    global outside the allowlist, or holds original params that FindParams refuses.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    stream = io.BytesIO(data)
    try:
        loaded = RestrictedUnpickler(stream, path, _ALLOWED_GLOBALS, "an info pickle",
                                     "FindParams, FindResults and numpy arrays, dtypes and scalars").load()
    except UsageError:
        raise
    except Exception as exc:  # a damaged or foreign pickle can fail in any way; all of them are bad input
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise UsageError(f"{path} is not {EXPECTED} ({detail})") from None
    if stream.tell() != len(data):
        raise UsageError(f"{path} is not {EXPECTED} ({len(data) - stream.tell()} bytes follow the pickle)")
    if not (isinstance(loaded, tuple) and len(loaded) == 2
            and isinstance(loaded[0], (FindParams, _OriginalFindParams))
            and isinstance(loaded[1], (FindResults, _OriginalFindResults))):
        raise UsageError(f"{path} holds {_describe(loaded)}, expected {EXPECTED}")
    params, results = loaded
    if isinstance(params, _OriginalFindParams):
        params = _params_from_original(path, params.__dict__)
    else:
        _check_own_params(path, params.__dict__)
    if isinstance(results, _OriginalFindResults):
        results = _results_from_original(path, results.__dict__)
    else:
        _check_text_names(path, "FindResults", results.__dict__)
    return params, results


def _check_own_params(path: str, state: Dict[str, Any]) -> None:
    """dvtoolbox's FindParams as pickled: exactly its fields (its values are not re-validated)."""
    _check_text_names(path, "FindParams", state)
    known = {f.name for f in fields(FindParams)}
    if set(state) != known:
        what = sorted(known - set(state)) or sorted(set(state) - known)
        raise UsageError(f"{path}: its FindParams has {'missing' if known - set(state) else 'unknown'} field(s) "
                         f"{', '.join(what)}; expected exactly: {', '.join(sorted(known))}")


def _check_text_names(path: str, what: str, state: Dict[str, Any]) -> None:
    bad = [key for key in state if not isinstance(key, str)]
    if bad:
        raise UsageError(f"{path}: its {what} has non-text attribute names {ascii(bad)[:80]}")


def _params_from_original(path: str, state: Dict[str, Any]) -> FindParams:
    """A validated FindParams from the original's FindParams ``__dict__``."""
    values = dict(state)
    push_unit = values.pop("push_unit", None)
    known = {f.name for f in fields(FindParams) if f.init}
    unknown = sorted(repr(key) if not isinstance(key, str) else key for key in values if key not in known)
    missing = sorted(known - set(values))
    if unknown or missing:
        what = "; ".join(([f"unknown field(s) {', '.join(unknown)}"] if unknown else [])
                         + ([f"missing field(s) {', '.join(missing)}"] if missing else []))
        raise UsageError(f"{path}: the original's FindParams has {what}; expected exactly: {', '.join(sorted(known))}")
    for name in OFF_WHEN_NONE_FIELDS:
        if values[name] is None:
            values[name] = 0
    try:
        params = FindParams(**values)
    except (TypeError, ValueError) as exc:  # UsageError is a ValueError
        raise UsageError(f"{path}: dvtoolbox refuses the original's FindParams: {exc}") from None
    if push_unit is not None and push_unit != params.push_unit:
        raise UsageError(f"{path}: the original's FindParams has push_unit {push_unit!r}, but push_channel and "
                         f"push_spatial give {params.push_unit!r}")
    return params


def _results_from_original(path: str, state: Dict[str, Any]) -> FindResults:
    """A FindResults whose ``__dict__`` is the original's FindResults ``__dict__``, values untouched."""
    _check_text_names(path, "FindResults", state)
    results = FindResults.__new__(FindResults)
    results.__dict__.update(state)
    return results


def _describe(obj: Any) -> str:
    if isinstance(obj, tuple):
        names = [type(item).__name__.lstrip("_").replace("Original", "original ") for item in obj[:4]]
        return "a tuple (%s)" % ", ".join(names + (["..."] if len(obj) > 4 else []))
    return f"a {type(obj).__name__}"
