"""Settings read once at the edge: the original's ``settings_local.py`` and a ``--config FILE.yaml``.

``settings_local.py`` is read without running it: only module-level assignments whose values are literals, earlier
names, or ``+`` of those are taken (``%DVT_ROOT%`` is replaced by the file's folder, as the original did); anything
else (imports, functions) is skipped. The original's names map to flags (``caffevis_deploy_prototxt`` ->
``--deploy-proto`` ...); a variable named like a flag (``max_iter = 1000``) sets that flag's default too.
A YAML config is a mapping whose keys are flag names (``max-iter`` or ``max_iter``), read with ``yaml.safe_load``.

Both are data: they may name a model by its name only (``resnet50``, ``caffe:deploy.prototxt``), never a module
file to unpickle or a ``package.module:factory`` to import, and cannot set ``trust_model_file``; those only the
command line gives (a UsageError, one line, otherwise).
"""

from __future__ import annotations

import ast
import logging
import os
from typing import Dict, Iterable, Optional

import yaml

from dvtoolbox.errors import UsageError
from dvtoolbox.models.load import model_kind

log = logging.getLogger(__name__)

SETTINGS_FILE = "settings_local.py"
ORIGINAL_SETTINGS = {
    "caffevis_caffe_root": "caffe_root",
    "caffevis_deploy_prototxt": "deploy_proto",
    "caffevis_network_weights": "net_weights",
    "caffevis_data_mean": "mean",
}
LITERAL_FLAGS = ("mean", "channel_swap_to_rgb", "data_size", "push_spatial", "lr_params")
COMMAND_LINE_ONLY = ("trust_model_file",)  # opt-ins to run code: the user types them, no file sets them


def find_settings_file(folders: Iterable[str]) -> Optional[str]:
    """The first settings_local.py in ``folders``, or None."""
    for folder in folders:
        path = os.path.join(folder, SETTINGS_FILE)
        if os.path.isfile(path):
            return path
    return None


def read_settings_local(path: str, flag_names: Iterable[str]) -> Dict[str, object]:
    """Flag defaults (by dest name) from a settings_local.py, without executing it."""
    try:
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), filename=path)
    except (OSError, SyntaxError, ValueError) as exc:
        raise UsageError(f"cannot read settings file {path!r}: {exc}") from None
    names: Dict[str, object] = {"__file__": path}
    root = os.path.dirname(os.path.abspath(path))
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                value = _safe_value(node.value, names)
            except ValueError:
                log.debug("%s:%d: skipped (not a literal assignment)", path, node.lineno)
                continue
            if isinstance(value, str):
                value = value.replace("%DVT_ROOT%", root)
            names[node.targets[0].id] = value
    flags = set(flag_names)
    defaults = {}
    for name, value in names.items():
        dest = ORIGINAL_SETTINGS.get(name, name if name in flags else None)
        if dest is not None:
            check_data_only(f"settings file {path!r}", dest, value)
            defaults[dest] = as_flag_value(dest, value, python_value=True)
    return defaults


def check_data_only(source: str, dest: str, value) -> None:
    """Refuse what only the command line may give: a model that is code (a module file, package.module:factory)
    and the trust opt-ins. ``source`` names the file in the message."""
    flag = "--" + dest.replace("_", "-")
    if dest in COMMAND_LINE_ONLY:
        raise UsageError(f"{source} sets {dest}: it is an opt-in to run code, given only on the command line ({flag})")
    if dest == "model" and isinstance(value, str) and model_kind(value) != "name":
        raise UsageError(f"{source} names the model {value!r}, a {model_kind(value)}: a settings file or --config may "
                         "name registered models only (code is not run from them); give it as --model on the "
                         "command line")


def _safe_value(node: ast.AST, names: Dict[str, object]):
    if isinstance(node, ast.Name):
        if node.id not in names:
            raise ValueError(node.id)
        return names[node.id]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _safe_value(node.left, names) + _safe_value(node.right, names)
    return ast.literal_eval(node)


def read_yaml_config(path: str, flag_names: Iterable[str]) -> Dict[str, object]:
    """Flag defaults (by dest name) from a YAML mapping of flag names; unknown keys are a UsageError."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as exc:
        raise UsageError(f"--config: cannot read {path!r}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"--config: {path!r} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"--config: {path!r} must hold a mapping of flag names to values")
    flags = set(flag_names)
    defaults = {}
    for key, value in data.items():
        dest = str(key).lstrip("-").replace("-", "_")
        if dest not in flags:
            raise UsageError(f"--config: unknown key {key!r} in {path!r}; keys are the flag names, e.g. max-iter")
        check_data_only(f"--config {path!r}", dest, value)
        defaults[dest] = as_flag_value(dest, value)
    return defaults


def as_flag_value(dest: str, value, python_value: bool = False):
    """A settings value in the form the flag's parser takes. Literal flags (--mean, --data-size, ...) take
    Python-literal strings: a Python object from settings_local.py (``python_value``) or a non-string YAML value
    (a list, a mapping, null) is written as its literal; a YAML string is taken as typed on the command line. A
    number becomes its text, so that argparse converts it as it converts the command line's (``decay: 0`` gives
    the float 0.0 that ``--decay 0`` gives, and info.txt prints it so)."""
    if dest in LITERAL_FLAGS and (python_value or not isinstance(value, str)):
        return repr(tuple(value) if isinstance(value, list) else value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value)
    return value
