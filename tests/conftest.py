"""Shared fixtures: a tiny fixed-weight model (registered as "tiny_test") and seeding."""

import numpy as np
import pytest
import torch
from torch import nn

from dvtoolbox.models.pixel_space import InputContract
from dvtoolbox.models.registry import _MODELS, register_model

TINY_SIZE = (8, 8)
TINY_MEAN = (120.0, 110.0, 100.0)


class TinyNet(nn.Module):
    """conv1 (3->4, 3x3, pad 1) -> relu1 -> flatten -> fc8 (256 -> 5) -> prob. x: (N, 3, 8, 8), 0..255 minus mean."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.fc8 = nn.Linear(4 * 8 * 8, 5)
        self.prob = nn.Softmax(dim=1)

    def forward(self, x):
        logits = self.fc8(self.relu1(self.conv1(x / 64.0)).flatten(1))
        self.prob(logits)
        return logits


def tiny_weights(seed=3):
    """Fixed float32 weights drawn from numpy with ``seed``: conv_w (4,3,3,3), conv_b (4,), fc_w (5,256), fc_b (5,)."""
    rng = np.random.RandomState(seed)
    return {
        "conv1.weight": (rng.randn(4, 3, 3, 3) * 0.4).astype(np.float32),
        "conv1.bias": (rng.randn(4) * 0.1 + 0.05).astype(np.float32),
        "fc8.weight": (rng.randn(5, 256) * 0.15).astype(np.float32),
        "fc8.bias": (rng.randn(5) * 0.1).astype(np.float32),
    }


def make_tiny(weights=None):
    model = TinyNet()
    state = tiny_weights() if weights is None else weights
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    model.input_contract = InputContract(size=TINY_SIZE, channel_order="RGB", mean=TINY_MEAN,
                                         label_layers=("fc8", "prob"), labels=tuple(f"class{i}" for i in range(5)))
    return model.eval()


if "tiny_test" not in _MODELS:
    register_model("tiny_test")(lambda weights="default": make_tiny())


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    np.random.seed(0)
    torch.set_num_threads(2)


@pytest.fixture
def tiny_model():
    return make_tiny()
