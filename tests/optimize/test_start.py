"""x0 against the original's draws: ``np.random.seed(s)`` then normal / uniform, float64 and bit-identical."""

import numpy as np
import pytest

from dvtoolbox.errors import UsageError
from dvtoolbox.optimize.start import START_AT_CHOICES, initial_x

pytestmark = pytest.mark.filterwarnings("error")

SHAPE = (3, 11, 13)


@pytest.fixture
def mean():
    return np.random.default_rng(9).uniform(90, 130, SHAPE)


def test_choices():
    assert START_AT_CHOICES == ("mean_plus_rand", "randu", "mean")


@pytest.mark.parametrize("seed", [0, 7])
def test_mean_plus_rand_is_the_originals_draw(mean, seed):
    np.random.seed(seed)
    ref = np.random.normal(0, 10, mean.shape)
    x0 = initial_x("mean_plus_rand", seed, mean)
    assert x0.dtype == np.float64 and x0.shape == SHAPE
    np.testing.assert_array_equal(x0, ref)


def test_seeds_differ(mean):
    assert not np.array_equal(initial_x("mean_plus_rand", 0, mean), initial_x("mean_plus_rand", 7, mean))


@pytest.mark.parametrize("seed", [0, 7])
def test_randu_is_the_originals_draw(mean, seed):
    np.random.seed(seed)
    ref = np.random.uniform(0, 255, mean.shape) - mean
    x0 = initial_x("randu", seed, mean)
    assert x0.dtype == np.float64
    np.testing.assert_array_equal(x0, ref)
    assert ((x0 + mean >= -1e-3) & (x0 + mean <= 255 + 1e-3)).all()


def test_mean_is_zeros(mean):
    x0 = initial_x("mean", 3, mean)
    assert x0.dtype == np.float64 and x0.shape == SHAPE and not x0.any()


def test_global_numpy_state_untouched(mean):
    np.random.seed(123)
    expected = np.random.rand(3)
    np.random.seed(123)
    initial_x("mean_plus_rand", 0, mean)
    np.testing.assert_array_equal(np.random.rand(3), expected)


def test_npy_path_used_as_given(tmp_path, mean):
    stored = np.random.default_rng(2).normal(0, 50, SHAPE)  # float64 on disk
    path = tmp_path / "x0.npy"
    np.save(path, stored)
    x0 = initial_x(str(path), 0, mean)
    assert x0.dtype == np.float64
    assert x0.tobytes() == stored.tobytes()  # every bit of a float64 file
    np.save(path, stored.astype(np.float32))
    np.testing.assert_array_equal(initial_x(str(path), 0, mean), stored.astype(np.float32).astype(np.float64))


def assert_usage_error(start_at, mean, *words, seed=0):
    with pytest.raises(UsageError) as info:
        initial_x(start_at, seed, mean)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_npy_wrong_shape(tmp_path, mean):
    path = tmp_path / "x0.npy"
    np.save(path, np.zeros((3, 11, 12)))
    assert_usage_error(str(path), mean, "(3, 11, 13)", "(3, 11, 12)")


def test_npy_unreadable(tmp_path, mean):
    path = tmp_path / "x0.npy"
    path.write_bytes(b"not a numpy file\n\x00\x01 at all")
    assert_usage_error(str(path), mean, "cannot read", str(path))


def test_npy_not_finite_or_not_numbers(tmp_path, mean):
    bad = np.zeros(SHAPE)
    bad[0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    assert_usage_error(str(tmp_path / "nan.npy"), mean, "finite")
    np.save(tmp_path / "str.npy", np.full(SHAPE, "a"))
    assert_usage_error(str(tmp_path / "str.npy"), mean, "real numbers")


def test_npy_missing(tmp_path, mean):
    assert_usage_error(str(tmp_path / "absent.npy"), mean, "does not exist", "absent.npy")


@pytest.mark.parametrize("start_at", ["zeros", "Mean", "", "x0.png"])
def test_unknown_start_at_names_the_valid_ones(mean, start_at):
    assert_usage_error(start_at, mean, repr(start_at), *START_AT_CHOICES, ".npy")


@pytest.mark.parametrize("seed", [-1, 2**32, "zero"])
def test_bad_seed(mean, seed):
    assert_usage_error("mean_plus_rand", mean, "rand_seed", repr(seed), seed=seed)
