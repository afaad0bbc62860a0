"""What a folder holds, to assert that a refused command changed nothing: ``folder_state(folder)``."""

import os


def folder_state(folder):
    """Every file and folder under ``folder``: relative path -> (bytes, mtime) for files, None for folders."""
    state = {}
    for root, dirs, names in os.walk(folder):
        for name in dirs:
            state[os.path.relpath(os.path.join(root, name), folder)] = None
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                state[os.path.relpath(path, folder)] = (handle.read(), os.stat(path).st_mtime_ns)
    return state
