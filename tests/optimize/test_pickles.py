"""load_info and inspect_results on the original's Python 2 info pickles and on dvtoolbox's own.

The original's pickles are rebuilt here opcode by opcode, as Python 2.7's pure-Python ``pickle.py`` wrote them
(the original did ``import pickle`` and ``pickle.dump((params, results), ff, protocol=-1)``, i.e. protocol 2, memo
indices from 0) with numpy 1.x objects (``numpy.core.multiarray._reconstruct`` / ``scalar``, ``numpy.dtype``).
"""

import copy
import io
import os
import pickle
import pickletools
import struct

import numpy as np
import pytest

from dvtoolbox.cli.inspect_results import PROG, main
from dvtoolbox.errors import UsageError
from dvtoolbox.optimize.params import FindParams
from dvtoolbox.optimize.pickles import load_info
from dvtoolbox.optimize.results import FindResults
from dvtoolbox.optimize.writers import info_text

ORIGINAL_MODULE = "optimize.gradient_optimizer"


class Py2Global:
    """A module-level name, pickled as GLOBAL."""

    def __init__(self, module, name):
        self.module, self.name = module, name


class Py2Instance:
    """An instance of a Python 2 new-style class: NEWOBJ (protocol 2) or copy_reg._reconstructor, then BUILD."""

    def __init__(self, cls_name, state, module=ORIGINAL_MODULE, newobj=True):
        self.cls, self.state, self.newobj = Py2Global(module, cls_name), state, newobj


class Py2Pickler:
    """Protocol-2 bytes as Python 2.7's pickle.py writes them. str values are Python 2 str (latin-1 bytes).

    As pickle.py, an object saved twice (the same list, tuple, dict, instance or numpy object) is written once and
    then fetched from the memo (BINGET). Text, globals and dtypes are shared by value, as Python 2 shares them
    (interned names, one-character strings, dtype singletons).
    """

    def __init__(self):
        self.out = bytearray()
        self.memo = {}  # key -> (memo index, the object, kept alive so that its id is not reused)

    def dumps(self, obj) -> bytes:
        self.out += b"\x80\x02"                                     # PROTO 2
        self.save(obj)
        self.out += b"."                                            # STOP
        return bytes(self.out)

    def memoize(self, key, obj):
        index = len(self.memo)
        self.out += b"q" + bytes([index]) if index < 256 else b"r" + struct.pack("<I", index)  # BINPUT
        self.memo[key] = (index, obj)

    def reuse(self, key) -> bool:
        if key not in self.memo:
            return False
        index = self.memo[key][0]
        self.out += b"h" + bytes([index]) if index < 256 else b"j" + struct.pack("<I", index)  # BINGET
        return True

    def save(self, obj):
        shared_by_id = isinstance(obj, (list, dict, np.ndarray, np.generic, Py2Instance)) or (
            isinstance(obj, tuple) and obj)
        if shared_by_id and self.reuse(("id", id(obj))):
            return
        key = ("id", id(obj))
        if isinstance(obj, np.generic):  # first: np.float64 is a float, np.int64 is not an int
            self.save_reduce(Py2Global("numpy.core.multiarray", "scalar"), (obj.dtype, obj.tobytes()), None, key, obj)
        elif obj is None:
            self.out += b"N"                                        # NONE
        elif obj is True or obj is False:
            self.out += b"\x88" if obj else b"\x89"                 # NEWTRUE / NEWFALSE
        elif isinstance(obj, int):
            if 0 <= obj <= 0xFF:
                self.out += b"K" + struct.pack("<B", obj)           # BININT1
            elif 0 <= obj <= 0xFFFF:
                self.out += b"M" + struct.pack("<H", obj)           # BININT2
            elif -2**31 <= obj < 2**31:
                self.out += b"J" + struct.pack("<i", obj)           # BININT
            else:
                self.out += b"I%d\n" % obj                          # INT (a 64-bit Python 2 int)
        elif isinstance(obj, float):
            self.out += b"G" + struct.pack(">d", obj)               # BINFLOAT
        elif isinstance(obj, str):
            if not self.reuse(("str", obj)):
                self.save_bytes(obj.encode("latin-1"), ("str", obj), obj)
        elif isinstance(obj, bytes):
            self.save_bytes(obj, key, obj)
        elif isinstance(obj, tuple):
            self.save_tuple(obj)
        elif isinstance(obj, list):
            self.out += b"]"                                        # EMPTY_LIST
            self.memoize(key, obj)
            self.save_batch(obj, b"a", b"e")                        # APPEND / APPENDS
        elif isinstance(obj, dict):
            self.out += b"}"                                        # EMPTY_DICT
            self.memoize(key, obj)
            self.save_batch(list(obj.items()), b"s", b"u")          # SETITEM / SETITEMS
        elif isinstance(obj, Py2Global):
            if not self.reuse(("global", obj.module, obj.name)):
                self.out += b"c%s\n%s\n" % (obj.module.encode(), obj.name.encode())  # GLOBAL
                self.memoize(("global", obj.module, obj.name), obj)
        elif isinstance(obj, Py2Instance):
            self.save_instance(obj)
        elif isinstance(obj, np.dtype):
            if not self.reuse(("dtype", obj.str)):
                self.save_reduce(Py2Global("numpy", "dtype"), (obj.str[1:], 0, 1),
                                 (3, obj.str[0], None, None, None, -1, -1, 0), ("dtype", obj.str), obj)
        elif isinstance(obj, np.ndarray):
            self.save_reduce(Py2Global("numpy.core.multiarray", "_reconstruct"),
                             (Py2Global("numpy", "ndarray"), tuple([0]), "b"),  # a new (0,) each time, as numpy
                             (1, obj.shape, obj.dtype, False, obj.tobytes()), key, obj)
        else:
            raise TypeError(f"no Python 2 pickle layout for {type(obj)}")

    def save_bytes(self, data: bytes, key, obj):
        if len(data) < 256:
            self.out += b"U" + bytes([len(data)]) + data            # SHORT_BINSTRING
        else:
            self.out += b"T" + struct.pack("<i", len(data)) + data  # BINSTRING
        self.memoize(key, obj)

    def save_tuple(self, obj: tuple):
        if not obj:
            self.out += b")"                                        # EMPTY_TUPLE
            return
        if len(obj) > 3:
            self.out += b"("                                        # MARK
        for item in obj:
            self.save(item)
        self.out += {1: b"\x85", 2: b"\x86", 3: b"\x87"}.get(len(obj), b"t")  # TUPLE1-3 / TUPLE
        self.memoize(("id", id(obj)), obj)

    def save_batch(self, items, one: bytes, many: bytes):
        if len(items) > 1:
            self.out += b"("                                        # MARK
        for item in items:
            for part in (item if many == b"u" else (item,)):
                self.save(part)
        if items:
            self.out += many if len(items) > 1 else one

    def save_reduce(self, func, args, state, key, obj):
        self.save(func)
        self.save(args)
        self.out += b"R"                                            # REDUCE
        self.memoize(key, (obj, args))
        if state is not None:
            self.save(state)
            self.out += b"b"                                        # BUILD

    def save_instance(self, obj: Py2Instance):
        if obj.newobj:
            self.save(obj.cls)
            self.out += b")\x81"                                    # EMPTY_TUPLE, NEWOBJ
        else:
            self.save(Py2Global("copy_reg", "_reconstructor"))
            self.save((obj.cls, Py2Global("__builtin__", "object"), None))
            self.out += b"R"                                        # REDUCE
        self.memoize(("id", id(obj)), obj)
        self.save(obj.state)
        self.out += b"b"                                            # BUILD


def py2_dumps(obj) -> bytes:
    return Py2Pickler().dumps(obj)


def original_params_state(**changes):
    """The original FindParams.__dict__ of `optimize_image.py --decay 0.0001 --blur-radius 1.0 --blur-every 4
    --max-iter 1000 --lr-params "{'lr': 100.0}"` (the other regularizers off: None, the class defaults)."""
    state = dict(rand_seed=0, start_at="mean_plus_rand", push_layer="fc8", push_channel=130, push_spatial=(0, 0),
                 push_dir=1.0, decay=0.0001, blur_radius=1.0, blur_every=4, small_val_percentile=None,
                 small_norm_percentile=None, px_benefit_percentile=None, px_abs_benefit_percentile=None,
                 lr_policy="constant", lr_params={"lr": 100.0}, max_iter=1000, push_unit=(130, 0, 0))
    state.update(changes)
    return state


def expected_params():
    return FindParams(rand_seed=0, start_at="mean_plus_rand", push_layer="fc8", push_channel=130, push_spatial=(0, 0),
                      push_dir=1.0, decay=0.0001, blur_radius=1.0, blur_every=4, small_val_percentile=0,
                      small_norm_percentile=0, px_benefit_percentile=0, px_abs_benefit_percentile=0,
                      lr_policy="constant", lr_params={"lr": 100.0}, max_iter=1000)


def original_results_state(majority: bool):
    """An original FindResults.__dict__ after 5 iterations; the unit becomes the layer's max at ii 2 if majority."""
    x0 = np.random.RandomState(0).normal(0, 10, (3, 2, 2))          # the original's mean_plus_rand x0, seed 0
    xx = [x0 * (1 + ii) + 0.25 for ii in range(5)]
    obj = [np.float32(v) for v in (-1.30543, -0.756828, 5.0, 63.5805, 68.1828)]
    units = [330, 533, 130, 130, 130] if majority else [330, 533, 533, 1, 1]
    state = dict(ii=list(range(5)), obj=obj, idxmax=[(np.int64(u), np.int64(0), np.int64(0)) for u in units],
                 ismax=[u == 130 for u in units], norm=[np.float64(np.linalg.norm(x)) for x in xx],
                 dist=[np.float64(np.linalg.norm(x - x0)) for x in xx], std=[np.float64(x.std()) for x in xx],
                 x0=x0.copy(), best_obj=obj[4], best_xx=xx[4].copy(), best_ii=4, last_obj=obj[4],
                 last_xx=xx[4].copy(), last_ii=4, majority_obj=None, majority_xx=None,
                 meta_result="Metaresult: majority failure")
    if majority:
        state.update(majority_obj=obj[2], majority_xx=xx[2].copy(), majority_ii=2,
                     meta_result="Metaresult: majority success")
    return state


def trimmed(state):
    """The original's trim_arrays: each array becomes 'Trimmed <shape> array [<first>, <second>, ...]' (Python 2
    str() of numpy float64: 12 significant digits)."""
    return {key: ("Trimmed %s array [%.12g, %.12g, ...]" % (val.shape, val.flat[0], val.flat[1])
                  if isinstance(val, np.ndarray) else val) for key, val in state.items()}


def original_pickle(params_state, results_state, **kwargs) -> bytes:
    return py2_dumps((Py2Instance("FindParams", params_state, **kwargs),
                      Py2Instance("FindResults", results_state, **kwargs)))


def assert_identical(actual, expected, where="value"):
    """Same types throughout, equal values, arrays equal bit for bit (dtype, shape, bytes)."""
    assert type(actual) is type(expected), f"{where}: {type(actual)} != {type(expected)}"
    if isinstance(expected, np.ndarray):
        assert (actual.dtype, actual.shape, actual.tobytes()) == (expected.dtype, expected.shape, expected.tobytes())
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), where
        for index, (a, e) in enumerate(zip(actual, expected)):
            assert_identical(a, e, f"{where}[{index}]")
    elif isinstance(expected, dict):
        assert sorted(actual) == sorted(expected), where
        for key in expected:
            assert_identical(actual[key], expected[key], f"{where}[{key!r}]")
    else:
        assert actual == expected or (actual != actual and expected != expected), where


@pytest.fixture
def original_files(tmp_path):
    """The two files of one original majority-success run, and an info.pkl of a majority-failure run."""
    files = {
        "big": (tmp_path / "seed0_info_big.pkl", original_results_state(True)),
        "info": (tmp_path / "seed0_info.pkl", trimmed(original_results_state(True))),
        "failed": (tmp_path / "failed_info.pkl", trimmed(original_results_state(False))),
    }
    for path, state in files.values():
        path.write_bytes(original_pickle(original_params_state(), state))
    return {name: path for name, (path, _) in files.items()}


# ---- the bytes reproduce the original's layout ----

def test_pickler_writes_python2_pickle_py_bytes_for_a_numpy_array():
    # What Python 2.7 pickle.dumps(numpy.array([1.5, 2.5]), 2) gives with numpy 1.x.
    expected = (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nq\x00cnumpy\nndarray\nq\x01K\x00\x85q\x02U\x01bq\x03"
                b"\x87q\x04Rq\x05(K\x01K\x02\x85q\x06cnumpy\ndtype\nq\x07U\x02f8q\x08K\x00K\x01\x87q\tRq\n(K\x03U\x01<"
                b"q\x0bNNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x0cb\x89U\x10" + struct.pack("<2d", 1.5, 2.5)
                + b"q\rtq\x0eb.")
    assert py2_dumps(np.array([1.5, 2.5])) == expected


def test_original_pickle_has_protocol_2_layout(original_files):
    data = original_files["big"].read_bytes()
    ops = list(pickletools.genops(data))
    assert (ops[0][0].name, ops[0][1]) == ("PROTO", 2)
    assert max(op.proto for op, _, _ in ops) == 2
    names = {op.name for op, _, _ in ops}
    assert {"NEWOBJ", "BUILD", "SETITEMS", "SHORT_BINSTRING", "BINFLOAT", "NEWTRUE", "NEWFALSE", "BINGET"} <= names
    assert not names & {"BINUNICODE", "SHORT_BINUNICODE", "STACK_GLOBAL", "FRAME", "BINBYTES", "SHORT_BINBYTES"}
    assert {arg for op, arg, _ in ops if op.name == "GLOBAL"} == {
        "optimize.gradient_optimizer FindParams", "optimize.gradient_optimizer FindResults",
        "numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype", "numpy.core.multiarray scalar"}
    # class, its (empty) args, NEWOBJ: how protocol 2 pickles a new-style class instance
    first = [(op.name, arg) for op, arg, _ in ops[1:5]]
    assert first == [("GLOBAL", "optimize.gradient_optimizer FindParams"), ("BINPUT", 0), ("EMPTY_TUPLE", None),
                     ("NEWOBJ", None)]
    pickletools.dis(data, out=io.StringIO())  # checks the stack and memo are consistent


# ---- load_info: the original's pickles ----

def test_load_original_info_big(original_files):
    params, results = load_info(str(original_files["big"]))
    assert type(params) is FindParams and type(results) is FindResults
    assert params == expected_params()
    assert params.push_unit == (130, 0, 0)
    for name in ("small_val_percentile", "small_norm_percentile", "px_benefit_percentile",
                 "px_abs_benefit_percentile"):
        assert_identical(getattr(params, name), 0, name)  # None (off) became int 0
    assert_identical(results.__dict__, original_results_state(True), "results")
    assert all(type(v) is np.float32 for v in results.obj)
    assert results.obj[2] == np.float32(5.0) and results.best_obj == np.float32(68.1828)
    assert results.best_obj is results.obj[4] and results.majority_obj is results.obj[2]  # shared, as pickled
    assert results.x0.reshape(-1)[:2].tolist() == pytest.approx([17.6405234597, 4.00157208367], abs=1e-10)


def test_load_original_info_pkl_keeps_trimmed_strings_and_no_majority_ii(original_files):
    params, results = load_info(str(original_files["failed"]))
    assert params == expected_params()
    assert_identical(results.__dict__, trimmed(original_results_state(False)), "results")
    assert "majority_ii" not in results.__dict__
    assert results.x0 == "Trimmed (3, 2, 2) array [17.6405234597, 4.00157208367, ...]"
    assert results.majority_obj is None and results.majority_xx is None
    assert results.meta_result == "Metaresult: majority failure"


def test_load_original_pickled_with_copy_reg_reconstructor(tmp_path):
    path = tmp_path / "info.pkl"
    path.write_bytes(original_pickle(original_params_state(), trimmed(original_results_state(True)), newobj=False))
    assert b"ccopy_reg\n_reconstructor\n" in path.read_bytes()
    params, results = load_info(str(path))
    assert params == expected_params()
    assert_identical(results.__dict__, trimmed(original_results_state(True)), "results")


def test_load_original_with_regularizers_set_and_integer_values(tmp_path):
    path = tmp_path / "info.pkl"
    state = original_params_state(push_dir=1, decay=0, blur_radius=None, blur_every=0, small_val_percentile=20,
                                  px_abs_benefit_percentile=10.5, rand_seed=2**32 - 1,
                                  lr_policy="progress", lr_params={"max_lr": 100000000.0, "desired_prog": 2.0})
    path.write_bytes(original_pickle(state, {"meta_result": "Metaresult: majority failure"}))
    params, results = load_info(str(path))
    assert_identical(params.push_dir, 1)
    assert_identical(params.blur_radius, 0)
    assert_identical(params.small_val_percentile, 20)
    assert_identical(params.px_abs_benefit_percentile, 10.5)
    assert_identical(params.rand_seed, 2**32 - 1)
    assert_identical(params.lr_params, {"max_lr": 100000000.0, "desired_prog": 2.0})
    assert results.__dict__ == {"meta_result": "Metaresult: majority failure"}


@pytest.mark.parametrize("changes, message", [
    (dict(push_channel=-1), "push_channel must be an integer >= 0, got -1"),
    (dict(decay=2.0), "decay must be a finite number in [0, 1], got 2.0"),
    (dict(push_dir=float("inf")), "push_dir must be a finite number, got inf"),
    (dict(blur_radius=float("nan")), "blur_radius must be a finite number in [0, 8192], got nan"),
    (dict(lr_policy="progress01"), "lr_policy 'progress01' needs lr_params"),
    (dict(push_units=(1, 0, 0)), "unknown field(s) push_units"),
    (dict(max_iter=None), "max_iter must be an integer"),
    (dict(push_unit=(131, 0, 0)), "push_unit (131, 0, 0)"),
    (dict(push_spatial=[0, 0]), "push_spatial must be None or a tuple"),
    (dict(lr_params=[("lr", 1.0)]), "lr_params must be a dict"),
])
def test_original_params_that_dvtoolbox_refuses(tmp_path, changes, message):
    path = tmp_path / "info.pkl"
    path.write_bytes(original_pickle(original_params_state(**changes), {}))
    with pytest.raises(UsageError) as info:
        load_info(str(path))
    assert str(path) in str(info.value) and message in str(info.value) and "\n" not in str(info.value)


def test_original_params_missing_a_field(tmp_path):
    state = original_params_state()
    del state["max_iter"]
    path = tmp_path / "info.pkl"
    path.write_bytes(original_pickle(state, {}))
    with pytest.raises(UsageError, match="missing field\\(s\\) max_iter"):
        load_info(str(path))


# ---- load_info: dvtoolbox's own pickles ----

def own_results():
    res = FindResults()
    state = original_results_state(True)
    state["idxmax"] = [tuple(int(i) for i in unit) for unit in state["idxmax"]]
    state["ismax"] = [np.bool_(v) for v in state["ismax"]]
    res.__dict__.update(state)
    return res


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_own_pickles_round_trip(tmp_path, protocol):
    params, results = FindParams(decay=0.0001, blur_radius=1.0, blur_every=4, max_iter=1000), own_results()
    big, info = tmp_path / "info_big.pkl", tmp_path / "info.pkl"
    big.write_bytes(pickle.dumps((params, results), protocol=protocol))
    small = copy.deepcopy(results)
    small.trim_arrays()
    info.write_bytes(pickle.dumps((params, small), protocol=protocol))
    for path, expected in ((big, results), (info, small)):
        got_params, got_results = load_info(str(path))
        assert got_params == params and type(got_params) is FindParams
        assert_identical(got_results.__dict__, expected.__dict__, "results")


def test_own_pickle_whose_start_at_file_is_gone(tmp_path):
    start = tmp_path / "x0.npy"
    np.save(start, np.zeros((3, 2, 2)))
    params = FindParams(start_at=str(start))
    path = tmp_path / "info.pkl"
    path.write_bytes(pickle.dumps((params, FindResults()), protocol=pickle.HIGHEST_PROTOCOL))
    start.unlink()
    got, _ = load_info(str(path))
    assert got.start_at == str(start) and got == params


# ---- load_info: refused and broken files ----

@pytest.mark.parametrize("module, name", [("os", "system"), ("posix", "system"), ("builtins", "eval"),
                                          ("__builtin__", "getattr"), ("numpy", "load"),
                                          ("numpy.core.multiarray", "_reconstructx"), ("optimize", "FindParams")])
def test_refused_global_runs_nothing(tmp_path, module, name):
    marker = tmp_path / "ran"
    path = tmp_path / "info.pkl"
    path.write_bytes(b"c%s\n%s\n(S'touch %s'\ntR." % (module.encode(), name.encode(), str(marker).encode()))
    with pytest.raises(UsageError) as info:
        load_info(str(path))
    assert f"refusing to load the global {module}.{name}" in str(info.value)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()


def test_refused_global_with_a_newline_in_its_name_stays_one_line(tmp_path):
    path = tmp_path / "info.pkl"
    path.write_bytes(b"\x80\x04\x8c\x05os\nxx\x8c\x07sys\ntem\x93.")  # STACK_GLOBAL takes any text
    with pytest.raises(UsageError) as info:
        load_info(str(path))
    assert "refusing to load the global 'os\\nxx.sys\\ntem'" in str(info.value) and "\n" not in str(info.value)


def test_refused_global_inside_an_original_pickle(tmp_path):
    path = tmp_path / "info.pkl"
    state = original_results_state(True)
    state["meta_result"] = Py2Instance("system", {}, module="os")
    path.write_bytes(original_pickle(original_params_state(), state))
    with pytest.raises(UsageError, match="refusing to load the global os.system"):
        load_info(str(path))


def _truncated(original_files):
    return original_files["big"].read_bytes()[:-40]


@pytest.mark.parametrize("make, message", [
    (_truncated, "pickle data was truncated"),
    (lambda files: files["big"].read_bytes() + b"\x00", "1 bytes follow the pickle"),
    (lambda files: b"", "Ran out of input"),
    (lambda files: b"FindParams:\n    blur_every: 4\n", "is not a pickled (FindParams, FindResults) pair"),
    (lambda files: b"\xff\xd8\xff\xe0 a JPEG", "invalid load key"),
    (lambda files: pickle.dumps([1, 2]), "holds a list, expected"),
    (lambda files: pickle.dumps((FindParams(), FindResults(), 3)), "holds a tuple (FindParams, FindResults, int)"),
    (lambda files: pickle.dumps((FindResults(), FindParams())), "holds a tuple (FindResults, FindParams)"),
    (lambda files: py2_dumps((Py2Instance("FindResults", {}), 1)), "holds a tuple (original FindResults, int)"),
])
def test_broken_files_give_one_line(tmp_path, original_files, make, message):
    path = tmp_path / "broken.pkl"
    path.write_bytes(make(original_files))
    with pytest.raises(UsageError) as info:
        load_info(str(path))
    text = str(info.value)
    assert message in text and str(path) in text and "\n" not in text


def test_missing_file(tmp_path):
    with pytest.raises(UsageError, match="cannot read .*nothing.pkl: No such file or directory"):
        load_info(str(tmp_path / "nothing.pkl"))


# ---- the command line ----

def test_cli_prints_info_txt(original_files, capsys):
    assert main([str(original_files["big"])]) == 0
    out, err = capsys.readouterr()
    assert out == info_text(*load_info(str(original_files["big"])))
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == "FindParams:" and lines[1] == "                    blur_every: 4"
    assert "                     push_unit: (130, 0, 0)" in lines
    assert "FindResults:" in lines
    assert "                      best_obj: 68.1828" in lines
    assert "                   majority_ii: 2" in lines
    assert "                   meta_result: Metaresult: majority success" in lines
    assert lines[-2:] == ["                            x0: (3, 2, 2) array [17.6405234597, 4.00157208367, ...]", ""]


def test_cli_several_files_each_under_a_header(original_files, capsys):
    files = [str(original_files["info"]), str(original_files["failed"])]
    assert main(files) == 0
    out, _ = capsys.readouterr()
    assert out == "".join(f"==> {f} <==\n" + info_text(*load_info(f)) for f in files)


def test_cli_saves_images_bit_exactly_and_refuses_to_overwrite(original_files, tmp_path, capsys):
    folder = tmp_path / "images"
    args = [str(original_files["big"]), str(original_files["failed"]), "--save-images", str(folder)]
    assert main(args) == 0
    capsys.readouterr()
    state = original_results_state(True)
    fields = ("x0", "best_xx", "last_xx", "majority_xx")
    assert sorted(os.listdir(folder)) == sorted(f"seed0_info_big_{name}.npy" for name in fields)
    for name in fields:
        assert_identical(np.load(folder / f"seed0_info_big_{name}.npy"), state[name], name)

    target = folder / "seed0_info_big_x0.npy"
    target.write_bytes(b"keep me")
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"{PROG}: error: cowardly refusing to overwrite {folder}") and "--brave" in err
    assert target.read_bytes() == b"keep me"

    assert main(args + ["--brave"]) == 0
    assert_identical(np.load(target), state["x0"], "x0")


def test_cli_info_pkl_writes_no_images(original_files, tmp_path, capsys):
    folder = tmp_path / "images"
    assert main([str(original_files["info"]), "--save-images", str(folder)]) == 0
    assert not folder.exists()


def test_cli_refuses_two_inputs_writing_the_same_names(tmp_path, capsys):
    paths = []
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        paths.append(tmp_path / sub / "info_big.pkl")
        paths[-1].write_bytes(original_pickle(original_params_state(), original_results_state(False)))
    assert main([str(p) for p in paths] + ["--save-images", str(tmp_path / "out")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert f"two input files would both write {tmp_path / 'out' / 'info_big_best_xx.npy'}" in err
    assert not (tmp_path / "out").exists()


def _params_without(name):
    params = FindParams()
    del params.__dict__[name]
    return params


def _params_with(**state):
    params = FindParams()
    params.__dict__.update(state)
    return params


def _results_with(state):
    results = FindResults()
    results.__dict__.update(state)
    return results


def _own_pair_bytes(params, results):
    return pickle.dumps((params, results))


def _truncated_own(folder):
    path = folder / "truncated.pkl"
    path.write_bytes(pickle.dumps((FindParams(), FindResults()))[:-20])
    return path


# name -> (what the second file is: bytes, a function of the tmp folder giving its path, or None for no file; the
# line's text)
BAD_INSPECT_INPUTS = {
    "missing file": (None, "cannot read"),
    "a folder": (lambda folder: folder, "cannot read"),
    "empty file": (b"", "Ran out of input"),
    "not a pickle": (b"not a pickle", "is not a pickled (FindParams, FindResults) pair"),
    "JPEG bytes": (b"\xff\xd8\xff\xe0 a JPEG", "invalid load key"),
    "truncated pickle": (lambda folder: _truncated_own(folder), "pickle data was truncated"),
    "bytes after the pickle": (pickle.dumps((FindParams(), FindResults())) + b"x", "1 bytes follow the pickle"),
    "a pickled list": (pickle.dumps([1, 2]), "holds a list, expected"),
    "a pickled dict": (pickle.dumps({"params": 1}), "holds a dict, expected"),
    "pair in the wrong order": (pickle.dumps((FindResults(), FindParams())), "holds a tuple (FindResults, FindParams)"),
    "os.system global": (b"cos\nsystem\n(S'true'\ntR.", "refusing to load the global os.system"),
    "builtins.eval global": (b"cbuiltins\neval\n(S'1'\ntR.", "refusing to load the global builtins.eval"),
    "subprocess global": (b"\x80\x04csubprocess\nPopen\n.", "refusing to load the global subprocess.Popen"),
    "deeply nested tuples": (b"(" * 200000 + b"t" * 200000 + b".", "holds a tuple (tuple), expected"),
    "params missing a field": (_own_pair_bytes(_params_without("decay"), FindResults()),
                               "its FindParams has missing field(s) decay"),
    "params with an extra field": (_own_pair_bytes(_params_with(colour="red"), FindResults()),
                                   "its FindParams has unknown field(s) colour"),
    "results with a number as a name": (_own_pair_bytes(FindParams(), _results_with({7: "seven"})),
                                        "its FindResults has non-text attribute names [7]"),
    "results with a one-value array": (_own_pair_bytes(FindParams(), _results_with({"x0": np.zeros(1)})),
                                       "cannot show what it holds as info.txt (IndexError"),
}


@pytest.mark.parametrize("case", sorted(BAD_INSPECT_INPUTS))
def test_cli_bad_input_exits_2_with_one_line(original_files, tmp_path, capsys, case):
    content, message = BAD_INSPECT_INPUTS[case]
    path = tmp_path / "bad.pkl"
    if callable(content):
        path = content(tmp_path)
    elif content is not None:
        path.write_bytes(content)
    before = _tree(tmp_path)
    assert main([str(original_files["big"]), str(path), "--save-images", str(tmp_path / "images")]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # every file is read before anything is printed
    assert err.count("\n") == 1 and err.startswith(f"{PROG}: error: ") and message in err and str(path) in err, err
    assert "Traceback" not in err and _tree(tmp_path) == before


def test_cli_save_images_under_a_file_is_one_line(original_files, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert main([str(original_files["big"]), "--save-images", str(tmp_path / "afile" / "images")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and f"--save-images {tmp_path / 'afile' / 'images'}: " in err
    assert f"{tmp_path / 'afile'} is not a folder" in err


def _tree(folder):
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) if p.is_file() else None
            for p in folder.rglob("*")}
