"""ProgramCache: entries made once per key, the least recently used dropped past the capacity, keys by value
(strings, layouts) or by identity (an Objective)."""

import pytest
import torch

from dvtoolbox.device import Execution
from dvtoolbox.models.program_cache import ProgramCache, ProgramKey
from dvtoolbox.objectives import create_objective

CPU = torch.device("cpu")


def key(layer, what=None, engine="eager", precision="float32"):
    return ProgramKey.of("unit", layer, what, Execution(engine, precision).on(CPU), CPU)


def test_an_entry_is_made_once_per_key():
    cache, made = ProgramCache(), []
    first = cache.get(key("fc8"), lambda: made.append("fc8") or ("network", "program"))
    again = cache.get(key("fc8"), lambda: made.append("again") or ("other", "other"))
    assert first is again and made == ["fc8"] and len(cache) == 1


def test_the_execution_and_device_are_part_of_the_key():
    assert key("fc8") != key("fc8", engine="folded")
    assert key("fc8", engine="compiled") == ProgramKey("unit", "fc8", None, True, True, "float32", "cpu")
    assert key("fc8", precision="bf16") != key("fc8")
    assert ProgramKey.of("unit", "fc8", None, Execution("eager"), torch.device("cuda", 1)).device == "cuda:1"


def test_past_its_capacity_the_least_recently_used_entry_is_dropped():
    cache = ProgramCache(capacity=2)
    for layer in ("a", "b"):
        cache.get(key(layer), lambda layer=layer: (layer, None))
    cache.get(key("a"), lambda: ("a again", None))  # a is now the most recently used
    cache.get(key("c"), lambda: ("c", None))
    assert key("b") not in cache and key("a") in cache and key("c") in cache
    assert [network for network, _ in cache.values()] == ["a", "c"]


def test_an_objective_is_keyed_by_identity_and_kept_alive_by_its_key():
    cache = ProgramCache()
    one, same_text = create_objective("fc8:1"), create_objective("fc8:1")
    cache.get(key("fc8", one), lambda: ("one", None))
    assert key("fc8", same_text) not in cache and key("fc8", one) in cache
    assert key("fc8", "fc8:1") == key("fc8", "fc8:1")  # an expression string is keyed by its text


def test_clear_drops_every_entry_and_a_capacity_below_one_is_refused():
    cache = ProgramCache()
    cache.get(key("fc8"), lambda: ("n", "p"))
    cache.clear()
    assert len(cache) == 0
    with pytest.raises(ValueError, match="capacity must be >= 1, got 0"):
        ProgramCache(capacity=0)
