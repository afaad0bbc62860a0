"""The layout promised in the README: imports flow one way (cli -> exemplars -> optimize / optvis -> run ->
objectives / regularizers -> dictionaries -> models -> io), the two engines never import each other, the model registry imports no model, and
the run context is the only place where a job or a command line loads a model."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "dvtoolbox"
ALLOWED = {  # package -> the dvtoolbox packages it may import (checks: the number checks, as basic as errors)
    "cli": {"checks", "device", "dictionaries", "errors", "exemplars", "io", "models", "objectives", "optimize", "optvis",
            "regularizers", "run"},
    "exemplars": {"checks", "device", "dictionaries", "errors", "io", "models", "objectives", "optimize", "run"},
    "optimize": {"checks", "device", "dictionaries", "errors", "io", "models", "objectives", "regularizers", "run"},
    "optvis": {"checks", "device", "dictionaries", "errors", "io", "models", "objectives", "regularizers", "run"},
    "run": {"checks", "device", "errors", "io", "models"},
    "objectives": {"checks", "dictionaries", "errors", "models"},
    "dictionaries": {"checks", "errors", "models"},
    "regularizers": {"checks", "errors"},
    "models": {"checks", "errors", "io"},
    "io": {"checks", "errors"},
    "device": {"errors"},
    "checks": {"errors"},
    "errors": set(),
}


def imported_dvtoolbox_modules(path: pathlib.Path):
    """Every ``dvtoolbox.x...`` module a file imports, at any depth (function-level imports too)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dvtoolbox."):
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("dvtoolbox."))


def package_of(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0][:-3] if len(parts) == 1 else parts[0]


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_flow_one_way(path):
    package = package_of(path)
    for module in imported_dvtoolbox_modules(path):
        target = module.split(".")[1]
        assert target == package or target in ALLOWED[package], f"{package} must not import {module}"


def test_every_package_has_a_rule():
    assert {package_of(p) for p in SOURCES} <= set(ALLOWED)


def test_the_registry_imports_no_model():
    modules = set(imported_dvtoolbox_modules(PACKAGE / "models" / "registry.py"))
    assert modules <= {"dvtoolbox.errors"}


MODEL_LOADERS = {"load_model", "create_model", "build_model"}  # what makes a network from what a user names
JOB_FILES = sorted(p for p in SOURCES if package_of(p) == "cli" or p.parent.name == "job")


def names_used(path: pathlib.Path):
    """Every name a file imports or calls."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.Name):
            yield node.id
        elif isinstance(node, ast.Attribute):
            yield node.attr


def test_the_jobs_and_command_lines_exist_where_this_test_looks():
    assert {p.relative_to(PACKAGE).parts[0] for p in JOB_FILES} == {"cli", "optimize", "optvis"}


@pytest.mark.parametrize("path", JOB_FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_the_run_context_loads_a_model_for_a_job(path):
    assert not MODEL_LOADERS & set(names_used(path)), f"{path.name} loads a model: open a run (run.context) instead"


def test_the_run_context_loads_the_model():
    assert {"load_model", "create_model"} <= set(names_used(PACKAGE / "run" / "context.py"))
