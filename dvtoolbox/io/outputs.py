"""Before a run writes anything: the overwrite rule and a writable folder, checked for every file it will write.

Nothing is overwritten without ``brave`` (the original's ``--brave``); the check runs before any work, so a refused
run has cost nothing and written nothing. Files themselves are written atomically (``atomic.py``).
"""

from __future__ import annotations

import os
import tempfile
from typing import Sequence

from dvtoolbox.errors import UsageError


def check_writable(paths: Sequence[str], brave: bool) -> None:
    """Refuse, before any work, to overwrite without brave, or to write where we cannot; creates the folders."""
    if not brave:
        existing = [p for p in paths if os.path.exists(p)]
        if existing:
            raise UsageError(f"cowardly refusing to overwrite {existing[0]} (and {len(existing) - 1} more); "
                             "allow it with brave, or write elsewhere (output_prefix)", "brave", "output_prefix")
    for folder in sorted({os.path.dirname(os.path.abspath(p)) for p in paths}):
        try:
            os.makedirs(folder, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as exc:
            raise UsageError(f"cannot write results to folder {folder!r}: {exc.strerror or exc}") from None
