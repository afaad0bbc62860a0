"""The original's Python-literal option strings ("(6,6)", "{'lr': 100.0}", "None", "'mean.npy'"), parsed with
``ast.literal_eval`` (never ``eval``) and checked for the type each flag needs; every number in them must be finite
(``1e400`` is a literal, and infinite; a YAML list may hold ``.nan``). Each parser raises UsageError with one line
naming the flag, the value and what is valid.
"""

from __future__ import annotations

import ast
import math
from typing import Dict, Optional, Tuple, Union

from dvtoolbox.checks import is_int as _is_int
from dvtoolbox.checks import is_real
from dvtoolbox.errors import UsageError


def literal(flag: str, text: str, example: str):
    """ast.literal_eval(text); anything that is not a plain Python literal is a UsageError."""
    if not isinstance(text, str):
        return text
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise UsageError(f"{flag}: {text!r} is not a Python literal; expected e.g. {example}") from None


def _is_finite(value) -> bool:
    return is_real(value) and math.isfinite(value)


def parse_mean(text: str) -> Union[None, Tuple[float, ...], str]:
    """--mean: None, a tuple of per-channel values, or a file path (quoted, as the original wants; an unquoted
    path ending in .npy or .binaryproto is accepted too)."""
    stripped = text.strip() if isinstance(text, str) else text
    if isinstance(stripped, str) and stripped.endswith((".npy", ".binaryproto")) and stripped[:1] not in "'\"":
        return stripped
    value = literal("--mean", text, "\"None\", \"(104,117,123)\" or \"'mean.npy'\"")
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)) and value and all(_is_finite(v) for v in value):
        return tuple(float(v) for v in value)
    raise UsageError(f"--mean must be None, a tuple of per-channel finite numbers or a quoted file path, got "
                     f"{text!r}")


def parse_int_tuple(flag: str, text: str, length: Optional[int], minimum: int,
                    maximum: Optional[int] = None) -> Tuple[int, ...]:
    """A tuple of ints in [minimum, maximum] (of the given length, if any)."""
    value = literal(flag, text, "\"(227,227)\"" if length == 2 else "\"(2,1,0)\"")
    if (not isinstance(value, (tuple, list)) or (length is not None and len(value) != length) or not value
            or not all(_is_int(v) and minimum <= v <= (v if maximum is None else maximum) for v in value)):
        what = f"a tuple of {length} integers" if length else "a tuple of integers"
        bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise UsageError(f"{flag} must be {what} {bounds}, got {text!r}")
    return tuple(int(v) for v in value)


def parse_push_spatial(text: str) -> Union[Tuple[int, int], int]:
    """--push-spatial: None (for a layer without space; means (0, 0)), a tuple (y, x), or one integer, a token
    index (on a token layer)."""
    value = literal("--push-spatial", text, "\"None\", \"(6,6)\" or a token index \"5\"")
    if value is None:
        return (0, 0)
    if _is_int(value) and value >= 0:
        return int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) and v >= 0 for v in value):
        return (int(value[0]), int(value[1]))
    raise UsageError(f"--push-spatial must be None, a tuple (y, x) of two integers >= 0 or a token index, got "
                     f"{text!r}")


def parse_lr_params(text: str) -> Dict[str, float]:
    """--lr-params: a dict of finite number values, e.g. {'lr': 100.0}; which keys are needed depends on
    --lr-policy."""
    value = literal("--lr-params", text, "\"{'lr': 100.0}\"")
    if not isinstance(value, dict) or not all(isinstance(k, str) and _is_finite(v) for k, v in value.items()):
        raise UsageError(f"--lr-params must be a dict of names to finite numbers, e.g. \"{{'lr': 100.0}}\", got "
                         f"{text!r}")
    return dict(value)


def parse_rgb(flag: str, text: str) -> Tuple[float, float, float]:
    """Three finite numbers, e.g. "(0.5,0.5,0.5)" (an RGB mean or std on the 0..1 scale)."""
    value = literal(flag, text, "\"(0.485,0.456,0.406)\"")
    if not isinstance(value, (tuple, list)) or len(value) != 3 or not all(_is_finite(v) for v in value):
        raise UsageError(f"{flag} must be 3 finite numbers (RGB, 0..1 scale), got {text!r}")
    return tuple(float(v) for v in value)
