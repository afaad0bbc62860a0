"""Weights: loading a state dict into a model with one-line errors, and the files that are not shipped (a cache
folder, a real download, and a one-line error when offline).

``load_weights(model, path)`` loads strictly; a missing file, an unreadable one, a missing or extra key or a wrong
shape is a ``UsageError`` naming the first bad key and both shapes.

``fetch_weights(filename, url)`` returns the path of ``filename`` in ``cache_dir()`` (``$DVTOOLBOX_HOME``, else
``~/.cache/dvtoolbox``). When the file is not there yet it is downloaded with ``torch.hub.download_url_to_file``
into a temporary file beside it, checked (sha256 when the caller knows it, and the size it must have at least),
and only then renamed into place, so that an interrupted download never leaves a half file under the real name.
When the download fails (no network, a proxy, a 404, a wrong hash) the error is a one-line ``UsageError`` that
says where to put the file by hand.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import urllib.error
from typing import Optional, Union

import torch
from torch import nn

from dvtoolbox.errors import UsageError

log = logging.getLogger(__name__)

ENV_HOME = "DVTOOLBOX_HOME"


def cache_dir() -> str:
    """The folder for downloaded weights: ``$DVTOOLBOX_HOME`` when set, else ``~/.cache/dvtoolbox``."""
    home = os.environ.get(ENV_HOME)
    return os.path.abspath(os.path.expanduser(home if home else os.path.join("~", ".cache", "dvtoolbox")))


def sha256_of(path: str, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _by_hand(path: str, url: str) -> str:
    return f"download {url} yourself and put it at {path}"


def fetch_weights(filename: str, url: str, sha256: Optional[str] = None, min_bytes: int = 0,
                  progress: bool = True, folder: Optional[str] = None) -> str:
    """Path of ``filename`` in ``folder`` (default ``cache_dir()``), downloading it from ``url`` first when it is
    missing.

    sha256: the expected hex digest of the file, or its first hex digits (at least 8; torchvision names its files
    after them), checked after a download; None when none is published.
    min_bytes: the smallest size a complete file can have (a cheap check for an HTML error page or a cut file).
    A failed download is a UsageError that names the URL, the reason and where to put the file by hand.
    """
    if sha256 is not None and len(sha256) < 8:
        raise ValueError(f"sha256 must have at least 8 hex digits, got {sha256!r}")
    folder = cache_dir() if folder is None else folder
    path = os.path.join(folder, filename)
    if os.path.isfile(path):
        return path
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the weights folder {folder!r} ({exc.strerror}); set ${ENV_HOME} to a "
                         f"writable folder, or {_by_hand(path, url)}") from None
    log.info("downloading %s to %s", url, path)
    fd, tmp = tempfile.mkstemp(prefix="." + filename + ".", suffix=".part", dir=folder)
    os.close(fd)
    try:
        try:
            torch.hub.download_url_to_file(url, tmp, hash_prefix=None, progress=progress)
        except (urllib.error.URLError, OSError, ValueError) as exc:  # offline, DNS, HTTP errors, refused, bad URL
            reason = getattr(exc, "reason", None) or exc
            raise UsageError(f"cannot download {filename} ({type(exc).__name__}: {reason}); offline? "
                             f"{_by_hand(path, url)}") from None
        size = os.path.getsize(tmp)
        if size < min_bytes:
            raise UsageError(f"the download of {url} is {size} bytes, expected at least {min_bytes}; "
                             f"{_by_hand(path, url)}")
        if sha256 is not None:
            got = sha256_of(tmp)
            if not got.startswith(sha256.lower()):
                raise UsageError(f"the download of {url} has sha256 {got}, expected {sha256.lower()}; "
                                 f"{_by_hand(path, url)}")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return path


def load_weights(model: nn.Module, path: Union[str, os.PathLike], name: str = "efficientnet_lite0") -> None:
    """Load the state dict in ``path`` into ``model``; a missing or unreadable file, a missing or extra key or a
    wrong shape is a one-line UsageError naming the first bad key and both shapes."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UsageError(f"weights file {path!r} does not exist")
    try:
        state = _read_state_dict(path)
    except UsageError:
        raise
    except Exception as exc:  # any unreadable file is the user's input
        raise UsageError(f"cannot read weights file {path!r}: {type(exc).__name__}: {exc}") from None
    if not isinstance(state, dict):
        raise UsageError(f"weights file {path!r} holds a {type(state).__name__}, not a state dict")
    problem = first_mismatch(model.state_dict(), state)
    if problem:
        raise UsageError(f"weights file {path!r} does not fit {name}: {problem}")
    model.load_state_dict(state, strict=True)


def first_mismatch(expected: dict, found: dict) -> Optional[str]:
    """A description of the first key whose presence or shape differs between two state dicts, or None."""
    for key in list(expected) + [k for k in found if k not in expected]:
        want = tuple(expected[key].shape) if key in expected else "absent"
        got = tuple(found[key].shape) if key in found and hasattr(found[key], "shape") else "absent"
        if want != got:
            return f"key {key!r}: model expects shape {want}, file has {got}"
    return None


def _read_state_dict(path: str) -> dict:
    """A state dict from ``.safetensors`` (with the safetensors package) or a torch file (tensors only)."""
    if path.endswith(".safetensors"):
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise UsageError(f"reading {path!r} needs the package safetensors (pip install safetensors)",
                             "weights") from None
        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)
