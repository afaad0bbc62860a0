"""Atomic writes: the target is either the old file or the whole new one; no temporary file is left."""

import os
import stat

import pytest

from dvtoolbox.io.atomic import atomic_open, write_text_atomic


def test_write_replaces_whole_file(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    write_text_atomic(str(target), "new contents")
    assert target.read_text() == "new contents"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_failure_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(str(target), "w") as handle:
            handle.write("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_written_files_get_the_mode_open_would_give(tmp_path):
    old = os.umask(0o027)
    try:
        import importlib
        import dvtoolbox.io.atomic as atomic
        atomic = importlib.reload(atomic)  # FILE_MODE is read from the umask at import
        atomic.write_text_atomic(str(tmp_path / "a.txt"), "x")
        with open(tmp_path / "b.txt", "w") as handle:
            handle.write("x")
    finally:
        os.umask(old)
        importlib.reload(atomic)
    assert stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode) == stat.S_IMODE(os.stat(tmp_path / "b.txt").st_mode) \
        == 0o640
