"""Whole modules saved with ``torch.save(model, path)``: read through an allow-list, or, when the user trusts the
file, unpickled whole.

Unpickling a file calls whatever callables the file names, so a module file from elsewhere can run any code. By
default a file is read by torch's ``weights_only`` unpickler, which calls only what it is given, and it is given
only what a module of the ecosystem's layers needs (``ALLOWED``):

- classes derived from ``nn.Module`` or ``enum.Enum`` defined in ``torch.nn`` (but not ``torch.nn.parallel``),
  ``torchvision`` or ``timm``, named by their own module and name;
- ``functools.partial`` (torchvision's ``norm_layer=partial(nn.LayerNorm, eps=...)``): it only holds what it wraps,
  which the file must name, and which must be allowed in turn;
- tensors, parameters, storages, dtypes, ``OrderedDict`` ...: torch's own ``weights_only`` allow-list.

Any other name (a class of the user's own, ``os.system``, ``builtins.eval``) is refused before anything is
unpickled, in one line naming the first such name, in the file's order, and the opt-in ``trust_model_file``; only
with it is the file unpickled whole (``torch.load(weights_only=False)``).
"""

from __future__ import annotations

import enum
import functools
import importlib
import io
import pickletools
import re
import zipfile
from typing import Iterator, List, Optional, Tuple

import torch
from torch import nn

from dvtoolbox.errors import UsageError

ALLOWED_PACKAGES = ("torch.nn", "torchvision", "timm")  # whose nn.Module / Enum classes a module file may name
REFUSED_PACKAGES = ("torch.nn.parallel",)               # process groups and devices: not part of a model
ALLOWED = "module classes of torch.nn, torchvision or timm"
TORCH_ADVICE = ("Weights only load failed", "Check the documentation", "(1)", "(2)")
TRUST = "if you trust the file, give trust_model_file (unpickling it whole runs any code it names)"


def load_module_file(path: str, trust_model_file: bool = False):
    """The object ``path`` holds (a module, unless the file holds something else). Without ``trust_model_file``,
    through the allow-list (see the module docstring); a refused or unreadable file is a one-line UsageError."""
    if trust_model_file:
        return _read(path, weights_only=False)
    allowed = [_allowed_or_refused(path, module, name) for module, name in named_globals(path)]
    with torch.serialization.safe_globals(allowed):
        return _read(path, weights_only=True)


def _read(path: str, weights_only: bool):
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as exc:  # any unreadable file is the user's input; torch's messages run over many lines
        message = f"model {path!r}: cannot read it ({type(exc).__name__}: {first_line(exc)})"
        if not weights_only:
            raise UsageError(message, "model") from None
        raise UsageError(f"{message}; {TRUST}", "model", "trust_model_file") from None


def first_line(exc: BaseException) -> str:
    """The line of ``exc``'s message that says what is wrong (torch's weights_only errors wrap it in advice)."""
    text = re.sub(r"\033\[[0-9;]*m", "", str(exc)).rpartition("WeightsUnpickler error:")[2]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    said = [line for line in lines if not line.startswith(TORCH_ADVICE)]
    return (said or lines or [""])[0]


def named_globals(path: str) -> List[Tuple[str, str]]:
    """The ``(module, name)`` pairs the file's pickle names that torch's own ``weights_only`` allow-list does not
    hold, in the file's order, each once; read from the pickle's opcodes, nothing unpickled."""
    unsafe = set(_unsafe_globals(path))
    seen: List[Tuple[str, str]] = []
    for module, name in _globals_in_order(_pickle_bytes(path)):
        if f"{module}.{name}" in unsafe and (module, name) not in seen:
            seen.append((module, name))
    return seen


def _unsafe_globals(path: str) -> List[str]:
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as exc:  # an old (non-zip) format, a damaged archive
        raise UsageError(f"model {path!r}: cannot check it against the allow-list of {ALLOWED} ({first_line(exc)}); "
                         + TRUST, "model", "trust_model_file") from None


def _pickle_bytes(path: str) -> bytes:
    """``<archive>/data.pkl``, the pickle of a torch.save zip archive."""
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        return archive.read(names[0]) if names else b""


def _globals_in_order(data: bytes) -> Iterator[Tuple[str, str]]:
    """GLOBAL opcodes' ``(module, name)``; the opcodes after a damaged one are not read (the unpickler refuses
    the file then)."""
    try:
        for opcode, arg, _ in pickletools.genops(io.BytesIO(data)):
            if opcode.name == "GLOBAL":
                module, _, name = str(arg).partition(" ")
                yield module, name
    except Exception:  # noqa: BLE001 - a damaged pickle: torch's unpickler says what is wrong
        return


def _allowed_or_refused(path: str, module: str, name: str):
    found = allowed_global(module, name)
    if found is None:
        raise UsageError(f"model {path!r}: refused: it names {module}.{name}, which is not on the allow-list "
                         f"({ALLOWED}); {TRUST}", "model", "trust_model_file")
    return found


def allowed_global(module: str, name: str) -> Optional[object]:
    """The object ``module.name`` names when the allow-list holds it (see the module docstring), else None. Only
    modules of the allowed packages are imported."""
    if (module, name) == ("functools", "partial"):
        return functools.partial
    if not _in_packages(module, ALLOWED_PACKAGES) or _in_packages(module, REFUSED_PACKAGES):
        return None
    try:
        found = getattr(importlib.import_module(module), name, None)
    except Exception:  # noqa: BLE001 - a package not installed, a module that does not import: not allowed
        return None
    if not isinstance(found, type) or (found.__module__, found.__qualname__) != (module, name):
        return None  # a function, or a class imported from elsewhere under this name
    return found if issubclass(found, (nn.Module, enum.Enum)) else None


def _in_packages(module: str, packages: Tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)
