"""Values printed as the original's Python 2.7 (with 2015's numpy) printed them."""

import glob
import os
import shutil
import subprocess

import numpy as np
import pytest

from dvtoolbox.optimize.py2_text import py2_dict_items, py2_hash, py2_repr, py2_str


@pytest.mark.parametrize("value, text", [
    (0, "0"), (1, "1"), (True, "True"), (np.int64(330), "330"),
    (1.0, "1.0"), (0.0001, "0.0001"), (100.0, "100.0"), (0.1 + 0.2, "0.3"), (1e16, "1e+16"),
    (123456789012345.0, "1.23456789012e+14"), (float("inf"), "inf"), (-2.0, "-2.0"),
    (np.float32(71.186447), "71.1864"), (np.float32(2.0), "2.0"), (np.float32(-1.3054336), "-1.30543"),
    (np.float64(17.64052345967664), "17.6405234597"), (np.float64(3.0), "3.0"),
    ((0, 0), "(0, 0)"), ("mean_plus_rand", "mean_plus_rand"), (None, "None"),
])
def test_py2_str(value, text):
    assert py2_str(value) == text


@pytest.mark.parametrize("value, text", [
    (0.1 + 0.2, "0.30000000000000004"), (np.float64(0.1), "0.10000000000000001"),
    (np.float32(-1.3054336), "-1.3054336"), (np.float32(2.0), "2.0"), ((130,), "(130,)"),
    ([np.float32(1.5), np.float64(2.0)], "[1.5, 2.0]"), ("fc8", "'fc8'"), ({"lr": 100.0}, "{'lr': 100.0}"),
])
def test_py2_repr(value, text):
    assert py2_repr(value) == text


def test_py2_hash_matches_python_2_on_64_bit():
    # hash('a') and hash('') in a 64-bit CPython 2.7 are known values; ints hash to themselves, -1 to -2
    assert py2_hash("a") == 12416037344
    assert py2_hash("") == 0
    assert py2_hash(7) == 7 and py2_hash(-1) == -2


def test_dict_order_follows_the_python_2_hash_table():
    # the classic Python 2.7 session: >>> {'a': 1, 'b': 2, 'c': 3}  ->  {'a': 1, 'c': 3, 'b': 2}
    assert py2_repr({"a": 1, "b": 2, "c": 3}) == "{'a': 1, 'c': 3, 'b': 2}"
    assert [k for k, _ in py2_dict_items({3: "y", 0: "z"})] == [0, 3]  # slots 0 and 3
    assert [k for k, _ in py2_dict_items({8: "b", 0: "a"})] == [8, 0]  # 0 collides with 8 (slot 0), probes on
    # six int keys: the table resizes to 32 slots and iterates in key order
    assert [k for k, _ in py2_dict_items({k: k for k in (5, 4, 3, 2, 1, 0)})] == [0, 1, 2, 3, 4, 5]
    # the same keys in another insertion order can iterate differently only through collisions
    assert py2_dict_items({"max_lr": 100.0, "desired_prog": 2.0}) == \
        py2_dict_items({"desired_prog": 2.0, "max_lr": 100.0})


def test_dict_with_other_keys_keeps_its_order():
    assert py2_dict_items({(1, 2): 0, "a": 1}) == [((1, 2), 0), ("a", 1)]


def find_python2():
    """A working Python 2.7 interpreter (on PATH or under pyenv), or None."""
    candidates = [shutil.which("python2.7"), shutil.which("python2")]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/2.7*/bin/python")))
    for exe in filter(None, candidates):
        if subprocess.run([exe, "-c", "import sys; assert sys.version_info[:2] == (2, 7)"],
                          capture_output=True).returncode == 0:
            return exe
    return None


PYTHON2 = find_python2()


@pytest.mark.skipif(PYTHON2 is None, reason="no Python 2.7 on this machine")
def test_against_a_real_python_2():
    """Where a Python 2.7 is installed: its own str() and repr() of seeded floats, ints, tuples and dicts."""
    rng = np.random.RandomState(4)
    values = [float(v) for v in rng.standard_normal(20) * 10.0 ** rng.randint(-8, 16, 20)]
    values += [0.1 + 0.2, 1e16, 100.0, 2.5e-05, -0.0, 123456789012.5]
    keys = ["lr", "max_lr", "desired_prog", "early_prog", "late_prog_mult", "a", "b", "c", "fc8", "conv5"]
    dicts = [{str(k): float(i) for i, k in enumerate(rng.permutation(keys)[:n])} for n in (2, 3, 3, 5, 6, 9)]
    dicts += [{int(k): 0 for k in rng.randint(-50, 50, n)} for n in (3, 7, 12)]
    program = ("import sys\nvalues, dicts = eval(sys.stdin.read())\n"
               "for v in values: print str(v); print repr(v)\n"
               "for d in dicts: print repr(d)\n")
    out = subprocess.run([PYTHON2, "-c", program], input=repr((values, dicts)), capture_output=True, text=True,
                         check=True).stdout.splitlines()
    expected = [t for v in values for t in (py2_str(v), py2_repr(v))] + [py2_repr(d) for d in dicts]
    assert out == expected
