"""The summary of a multi-unit run: its settings and, per unit, the result (best_obj, meta_result, files).

``<output-prefix>_<layer>_summary.json``, rewritten atomically after every batch. Under torchrun each rank writes
``..._summary.rank<R>.json`` and rank 0 merges them at the end. ``--resume`` refuses a summary whose settings differ
from the run's.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Dict, Optional

from dvtoolbox.errors import UsageError
from dvtoolbox.io.atomic import write_text_atomic
from dvtoolbox.optimize.results import FindResults


def summary_path(output_prefix: str, layer: str, rank: Optional[int] = None) -> str:
    """The summary file of a run on ``layer`` (a per-rank part when ``rank`` is given)."""
    stem = f"{output_prefix}_{layer.replace('/', '-')}_summary"
    return stem + (f".rank{rank}.json" if rank is not None else ".json")


def read_summary(path: str) -> Optional[Dict]:
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read run summary {path!r}: {exc}") from None


def check_same_settings(path: str, settings: Dict) -> None:
    """resume: the folder's run must have been made with these settings."""
    old = read_summary(path)
    if old is not None and old.get("settings") != settings:
        changed = sorted(k for k in set(old.get("settings", {})) | set(settings)
                         if old.get("settings", {}).get(k) != settings.get(k))
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
    parts = sorted(glob.glob(glob.escape(summary_path(output_prefix, layer)[:-len(".json")]) + ".rank*.json"))
    for part in parts:
        units.update(read_summary(part)["units"])
    write_summary(path, settings, units)
    for part in parts:
        os.unlink(part)
    return path
