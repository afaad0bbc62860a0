"""Atomic file writes: write to a temporary file in the same folder, then rename over the target.

A reader (or a run killed at any moment) sees either the old file or the complete new one, never a part.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from typing import IO, Iterator

_UMASK = os.umask(0)  # read once (os.umask can only be read by setting it), then restored
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK  # what open() would give a new file; mkstemp's own 0600 would hide results


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on a clean exit it is fsynced and renamed to ``path``.
    On an exception the temporary file is removed and ``path`` is untouched."""
    if "w" not in mode:
        raise ValueError(f"atomic_open is for writing; mode must contain 'w', got {mode!r}")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fchmod(handle.fileno(), FILE_MODE)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: str, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def write_text_atomic(path: str, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def remove_stale_temps(path: str) -> int:
    """Remove temporary files a killed writer of ``path`` left behind; returns how many."""
    folder, name = os.path.split(os.path.abspath(path))
    stale = glob.glob(os.path.join(glob.escape(folder), "." + glob.escape(name) + ".*.tmp"))
    for tmp in stale:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return len(stale)
