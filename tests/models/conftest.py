"""Fixtures of the model tests."""

import pytest
import torch


@pytest.fixture
def hf_offline(monkeypatch, tmp_path):
    """Never the network: an empty Hugging Face cache, offline; one thread."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
