"""The summary of a multi-unit run: its settings and, per unit, the result (best_obj, meta_result, files).

``<output-prefix>_<layer>_summary.json``, rewritten atomically after every batch. Under torchrun each rank writes
``..._summary.rank<R>.json`` and rank 0 merges them at the end. ``--resume`` refuses, before any work, a summary whose
settings differ from the run's, and one that is damaged or not a summary (``check_summary``): a finished unit (all
its files there) is never redone, and nothing is written, because a summary is damaged.
"""

from __future__ import annotations

import glob
import json
import numbers
import os
from typing import Dict, List, Optional

from dvtoolbox.errors import UsageError
from dvtoolbox.io.atomic import write_text_atomic
from dvtoolbox.optimize.results import FindResults

UNIT_FIELDS = {"best_obj": (numbers.Real, type(None)), "best_ii": (int, type(None)),  # a unit's entry: its
               "last_obj": (numbers.Real, type(None)), "majority_ii": (int, type(None)),   # fields and the JSON
               "meta_result": (str, type(None)), "prefix": (str,)}                          # types they hold


def summary_path(output_prefix: str, layer: str, rank: Optional[int] = None) -> str:
    """The summary file of a run on ``layer`` (a per-rank part when ``rank`` is given)."""
    stem = f"{output_prefix}_{layer.replace('/', '-')}_summary"
    return stem + (f".rank{rank}.json" if rank is not None else ".json")


def read_summary(path: str, n_units: Optional[int] = None) -> Optional[Dict]:
    """The summary at ``path``, checked (``check_summary``), or None when there is none. A summary that cannot be
    read or is not one (another file's text, JSON of another shape, garbage units, a folder) is a one-line
    UsageError that asks to move it away: nothing is run or written on it."""
    if not os.path.lexists(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        detail = " ".join(str(getattr(exc, "strerror", None) or exc or type(exc).__name__).split())[:200]
        raise _damaged(path, f"cannot be read: {detail}") from None
    problem = check_summary(data, n_units)
    if problem is not None:
        raise _damaged(path, problem)
    return data


def check_summary(data, n_units: Optional[int] = None) -> Optional[str]:
    """What is wrong with ``data`` as a run summary, or None: a mapping with ``settings`` (a mapping) and ``units``
    (unit number as decimal text, in [0, n_units) when ``n_units`` is given -> an entry with UNIT_FIELDS of
    their types)."""
    if not isinstance(data, dict):
        return f"it holds a JSON {_json_type(data)}, not an object"
    missing = [key for key in ("settings", "units") if key not in data]
    if missing:
        return f"it has no {missing[0]!r}"
    if not isinstance(data["settings"], dict):
        return f"its settings are a JSON {_json_type(data['settings'])}, not an object"
    if not isinstance(data["units"], dict):
        return f"its units are a JSON {_json_type(data['units'])}, not an object"
    for key, entry in data["units"].items():
        problem = _unit_problem(key, entry, n_units)
        if problem is not None:
            return f"unit {_short(key)}: {problem}"
    return None


def _unit_problem(key: str, entry, n_units: Optional[int]) -> Optional[str]:
    if not (key.isascii() and key.isdigit() and key == str(int(key))):
        return "not a unit number"
    if n_units is not None and int(key) >= n_units:
        return f"out of range, the layer has {n_units} units (0..{n_units - 1})"
    if not isinstance(entry, dict):
        return f"its entry is a JSON {_json_type(entry)}, not an object"
    for name, accepted in UNIT_FIELDS.items():
        if name not in entry:
            return f"its entry has no {name!r}"
        if not isinstance(entry[name], accepted) or isinstance(entry[name], bool):
            return f"its {name} is {_short(entry[name])}"
    return None


def _json_type(value) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _short(value) -> str:
    text = ascii(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _damaged(path: str, problem: str) -> UsageError:
    return UsageError(f"resume: {path} is not a run summary of optimize_image.py ({problem}); nothing was run: "
                      "move it away (its units' files are what resume reads), or use another output_prefix",
                      "resume", "output_prefix")


def check_resumable(output_prefix: str, layer: str, settings: Dict, n_units: int) -> None:
    """resume, before any work: the folder's summary and any per-rank parts (left by a torchrun run) must be
    run summaries of units of this layer (``read_summary``), and the summary must have these settings."""
    path = summary_path(output_prefix, layer)
    for part in rank_parts(output_prefix, layer):
        read_summary(part, n_units)
    check_same_settings(path, settings, n_units)


def rank_parts(output_prefix: str, layer: str) -> List[str]:
    """The per-rank summary parts on disk, sorted."""
    stem = summary_path(output_prefix, layer)[:-len(".json")]
    return sorted(glob.glob(glob.escape(stem) + ".rank*.json"))


def check_same_settings(path: str, settings: Dict, n_units: Optional[int] = None) -> None:
    """resume: the folder's run must have been made with these settings."""
    old = read_summary(path, n_units)
    if old is not None and old["settings"] != settings:
        changed = sorted(k for k in set(old["settings"]) | set(settings) if old["settings"].get(k) != settings.get(k))
        raise UsageError(f"resume: {path} was made with other settings (differing: {', '.join(changed)}); "
                         "use another output_prefix, or the same settings", "resume", "output_prefix")


def unit_entry(results: FindResults, prefix: str) -> Dict:
    """One unit's line of the summary (obj values as JSON numbers: the float32 value, widened exactly)."""
    return {"best_obj": _number(results.best_obj), "best_ii": results.best_ii, "last_obj": _number(results.last_obj),
            "majority_ii": results.majority_ii, "meta_result": results.meta_result, "prefix": prefix}


def _number(value) -> Optional[float]:
    return None if value is None else float(value)


def write_summary(path: str, settings: Dict, units: Dict[str, Dict]) -> None:
    ordered = dict(sorted(units.items(), key=lambda kv: int(kv[0])))
    write_text_atomic(path, json.dumps({"settings": settings, "units": ordered}, indent=1) + "\n")


def merge_rank_parts(output_prefix: str, layer: str, settings: Dict) -> str:
    """Rank 0, after the barrier: fold every rank's part (and an earlier summary) into the summary file."""
    path = summary_path(output_prefix, layer)
    units = dict((read_summary(path) or {}).get("units", {}))
    parts = rank_parts(output_prefix, layer)
    for part in parts:
        units.update(read_summary(part)["units"])
    write_summary(path, settings, units)
    for part in parts:
        os.unlink(part)
    return path
