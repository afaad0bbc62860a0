"""Every flag the README and doc/ show next to one of the command lines is a flag that command line has."""

import glob
import os
import re

import pytest

from dvtoolbox.cli import crop_max_patches, find_max_acts, gallery, inspect_results, optimize_image, visualize

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PARSERS = {"optimize_image": optimize_image.get_parser, "visualize": visualize.get_parser,
           "gallery": gallery.get_parser, "inspect_results": inspect_results.get_parser,
           "find_max_acts": find_max_acts.get_parser, "crop_max_patches": crop_max_patches.get_parser}
# a command's name as the docs write it -> its parser; bench_visualize.py and friends are other programs
COMMAND = re.compile(r"(?<![\w/])(?:\./)?(optimize_image|visualize|find_max_acts|crop_max_patches)\.py\b|"
                     r"dvtoolbox-(optimize-image|visualize|inspect-results|find-max-acts|crop-max-patches)\b|"
                     r"dvtoolbox\.cli\.(gallery|inspect_results)\b")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
END = re.compile(r"\||;\s|`\s|\)\s|\. [A-Z]|\s#\s|\btorchrun\b")  # where a command's flags end on a line
DOCS = ["README.md"] + sorted(glob.glob(os.path.join(ROOT, "doc", "*.md")))


def commands_in(text: str):
    """(line number, command, flags) for each command line shown; backslash continuations joined."""
    lines = text.replace("\\\n", " ").split("\n")
    for number, line in enumerate(lines, 1):
        found = list(COMMAND.finditer(line))
        for i, match in enumerate(found):
            stop = found[i + 1].start() if i + 1 < len(found) else len(line)
            tail = line[match.end():stop]
            end = END.search(tail)
            name = next(g for g in match.groups() if g).replace("-", "_")
            yield number, name, FLAG.findall(tail[:end.start()] if end else tail)


def known_flags(name: str) -> set:
    return set(PARSERS[name]()._option_string_actions)


@pytest.mark.parametrize("doc", DOCS, ids=os.path.basename)
def test_flags_shown_with_a_command_exist(doc):
    with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
        text = f.read()
    flags = {name: known_flags(name) for name in PARSERS}
    unknown = [(number, name, flag) for number, name, shown in commands_in(text) for flag in shown
               if flag not in flags[name]]
    assert not unknown, unknown


def test_the_scan_finds_commands_and_would_catch_a_missing_flag():
    text = ("    ./visualize.py --objective fc8:1 --data-size 64 | bench_visualize.py --engines x\n"
            "python -m dvtoolbox.cli.gallery row1 --gui-dir d \\\n    --gui-tile 32\n")
    shown = list(commands_in(text))
    assert shown == [(1, "visualize", ["--objective", "--data-size"]), (2, "gallery", ["--gui-dir", "--gui-tile"])]
    assert "--data-size" not in known_flags("visualize") and "--data-size" in known_flags("optimize_image")
