"""FindParams / FindResults: the original's printed layout, trimming, pickling and validation."""

import pickle
import re

import numpy as np
import pytest

from dvtoolbox.errors import UsageError
from dvtoolbox.optimize.params import FindParams
from dvtoolbox.optimize.results import FindResults


def seed_like_results():
    res = FindResults()
    res.ii = [0, 1, 998, 999]
    res.obj = [np.float32(v) for v in (-1.30543, -0.756828, 5.0, 63.5805, 68.1828)]
    res.dist = [np.float64(v) for v in (1.9916364387e-12, 3413.05052366, 3956.88723303, 3957.78892399, 1.0)]
    res.idxmax = [(330, 0, 0), (533, 0, 0), (130, 0, 0), (130, 0, 0), (130, 0, 0)]
    res.best_obj = np.float32(71.186447)
    res.x0 = np.array([17.6405234597, 4.00157208367, 1.0], np.float64).reshape(3, 1, 1)
    return res


def test_results_print_like_the_original():
    text = str(seed_like_results())
    assert text.startswith("FindResults:\n")
    assert "                           obj: [-1.30543, -0.756828, ..., 63.5805, 68.1828]\n" in text
    assert "                          dist: [1.9916364387e-12, 3413.05052366, ..., 3957.78892399, 1.0]\n" in text
    assert "                        idxmax: [(330, 0, 0), (533, 0, 0), ..., (130, 0, 0), (130, 0, 0)]\n" in text
    assert "                            ii: [0, 1, 998, 999]\n" in text
    assert "                      best_obj: 71.1864\n" in text
    assert "                            x0: (3, 1, 1) array [17.6405234597, 4.00157208367, ...]\n" in text


def test_short_lists_print_their_items_repr_as_python2_with_old_numpy():
    """Up to 4 items the original printed str(list): each item's repr (float32 8 digits, float64 17)."""
    res = FindResults()
    res.obj = [np.float32(-1.3054336), np.float32(2.0)]
    res.norm = [np.float64(0.1), np.float64(1118.0)]
    res.ismax = [False, True]
    res.idxmax = [(np.int64(330), 0, 0)]
    res.best_obj = np.float32(2.0)
    lines = str(res).splitlines()
    assert "                           obj: [-1.3054336, 2.0]" in lines
    assert "                          norm: [0.10000000000000001, 1118.0]" in lines
    assert "                         ismax: [False, True]" in lines
    assert "                        idxmax: [(330, 0, 0)]" in lines
    assert "                      best_obj: 2.0" in lines


def test_majority_ii_appears_only_once_reached():
    res = FindResults()
    assert res.majority_ii is None and "majority_ii" not in str(res)
    res.majority_ii = 27
    assert "                   majority_ii: 27" in str(res).splitlines()
    assert "majority_ii" not in vars(FindResults())


def test_trim_replaces_arrays_and_pickles_round_trip():
    res = seed_like_results()
    restored = pickle.loads(pickle.dumps(res))
    np.testing.assert_array_equal(restored.x0, res.x0)
    res.trim_arrays()
    assert res.x0 == "Trimmed (3, 1, 1) array [17.6405234597, 4.00157208367, ...]"


def test_params_print_like_the_original():
    p = FindParams(decay=0.0001, blur_radius=1.0, blur_every=4, max_iter=1000, lr_params={"lr": 100.0})
    lines = str(p).splitlines()
    assert lines[0] == "FindParams:"
    assert lines[1] == "                    blur_every: 4"
    assert "                      push_dir: 1" in lines  # the original's int default, not 1.0
    assert "         small_norm_percentile: 0" in lines
    assert "                     lr_params: {'lr': 100.0}" in lines
    given = FindParams(decay=0.0, push_dir=1.0)
    assert "                         decay: 0.0" in str(given).splitlines()
    assert "                     push_unit: (130, 0, 0)" in lines
    assert lines[-1] == "                      start_at: mean_plus_rand"
    assert [line.split(":")[0].strip() for line in lines[1:]] == sorted(line.split(":")[0].strip()
                                                                       for line in lines[1:])
    assert pickle.loads(pickle.dumps(p)) == p


@pytest.mark.parametrize("kwargs, message", [
    (dict(push_channel=-1), "push_channel must be an integer >= 0, got -1"),
    (dict(push_channel=1.5), "push_channel must be an integer"),
    (dict(push_spatial=(1,)), "push_spatial must be None or a tuple"),
    (dict(lr_policy="progress", lr_params={"max_lr": 1}), "desired_prog"),
    (dict(rand_seed=2**32), "rand_seed must be an integer in [0, 4294967295], got 4294967296"),
    (dict(decay=float("nan")), "decay must be a finite number in [0, 1], got nan"),
    (dict(decay=float("inf")), "decay must be a finite number in [0, 1], got inf"),
    (dict(blur_radius=float("inf")), "blur_radius must be a finite number in [0, 8192], got inf"),
    (dict(blur_radius=1e9), "blur_radius must be a finite number in [0, 8192], got 1000000000.0"),
    (dict(small_val_percentile=float("nan")), "small_val_percentile must be a finite number >= 0, got nan"),
    (dict(push_dir=float("inf")), "push_dir must be a finite number, got inf"),
    (dict(push_dir=float("nan")), "push_dir must be a finite number, got nan"),
    (dict(push_dir=True), "push_dir must be a finite number, got True"),
    (dict(max_iter=10**8 + 1), "max_iter must be an integer in [1, 100000000], got 100000001"),
    (dict(lr_params={"lr": float("inf")}), "must be finite and > 0, got lr=inf"),
])
def test_params_reject_bad_values(kwargs, message):
    """The library refuses what the command line refuses, with the field's name (the CLI shows its flag)."""
    with pytest.raises(UsageError, match=re.escape(message)) as info:
        FindParams(**kwargs)
    assert next(iter(kwargs)) in info.value.fields


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(UsageError, match="unknown FindParams field"):
        FindParams.from_dict({"max_iters": 3})
    assert FindParams.from_dict({"max_iter": 3}).max_iter == 3
