"""Feature-visualisation tests run on one CPU thread (the shared conftest seeds and sets 2)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread(_seed_everything):
    torch.set_num_threads(1)
