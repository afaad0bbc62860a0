#!/usr/bin/env python
"""Which of the project's requirements (setup.cfg's install_requires and the chosen extras) this Python lacks.

Reads the distributions' installed metadata, imports nothing, installs nothing: one line per requirement
("ok", "missing" or "too old", with the version found), then a closing line; exit status 0 when every requirement
is met, 1 otherwise. ``--missing`` prints only the unmet requirements, one per line, as pip takes them.

    python benchmarks/check_requirements.py --extras eval,test
    python -m pip install --no-deps --target /tmp/site $(python benchmarks/check_requirements.py --missing)

``benchmarks/gpu_check.sh`` runs it first, on a machine that may have no network.
"""

from __future__ import annotations

import argparse
import configparser
import os
import sys
from importlib import metadata
from typing import List, Sequence, Tuple

try:
    from packaging.requirements import Requirement
except ImportError:  # pip vendors packaging where it is not installed on its own
    from pip._vendor.packaging.requirements import Requirement

SETUP_CFG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "setup.cfg")


def requirements(setup_cfg: str, extras: Sequence[str]) -> List[Requirement]:
    """install_requires, then each extra's requirements in the order given; an unknown extra is a ValueError."""
    cfg = configparser.ConfigParser()
    cfg.read(setup_cfg)
    lines = cfg.get("options", "install_requires", fallback="").splitlines()
    known = cfg["options.extras_require"] if cfg.has_section("options.extras_require") else {}
    for extra in extras:
        if extra not in known:
            raise ValueError(f"no extra {extra!r} in {setup_cfg}; extras: {', '.join(known) or 'none'}")
        lines += known[extra].splitlines()
    reqs, seen = [], set()
    for line in (line.strip() for line in lines):
        if line and not line.startswith("#") and line not in seen:
            seen.add(line)
            reqs.append(Requirement(line))
    return reqs


def status(req: Requirement) -> Tuple[str, str]:
    """("ok" | "missing" | "too old", the installed version or "")."""
    try:
        version = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        return "missing", ""
    return ("ok" if req.specifier.contains(version, prereleases=True) else "too old"), version


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--extras", default="", help="comma-separated extras of setup.cfg, e.g. eval,test")
    ap.add_argument("--missing", action="store_true", help="print only the unmet requirements, one per line")
    ap.add_argument("--setup-cfg", default=SETUP_CFG, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    try:
        reqs = requirements(args.setup_cfg, [e for e in args.extras.split(",") if e])
    except ValueError as exc:
        print(f"check_requirements.py: error: {exc}", file=sys.stderr)
        return 2
    unmet = []
    for req in reqs:
        state, version = status(req)
        if state != "ok":
            unmet.append(req)
        if not args.missing:
            print(f"{state:>8}  {req}" + (f" ({version})" if version else ""))
    if args.missing:
        print("\n".join(str(req) for req in unmet))
    else:
        print(f"{len(reqs) - len(unmet)} of {len(reqs)} requirements met"
              + (f"; unmet: {', '.join(str(r) for r in unmet)}" if unmet else "") + f" ({sys.executable})")
    return 1 if unmet else 0


if __name__ == "__main__":
    sys.exit(main())
