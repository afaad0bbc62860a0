"""Where a run computes: the device by name, and true float32 on CUDA unless TF32 is asked for."""

from __future__ import annotations

import re
from typing import Optional

import torch

from dvtoolbox.errors import UsageError


def resolve_device(name: Optional[str]) -> torch.device:
    """'cpu', 'cuda' or 'cuda:N'; None means cuda when present, else cpu."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise UsageError(f"device must be cpu, cuda or cuda:N, got {name!r}", "device")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"device {name}: CUDA is not available on this machine; use cpu", "device")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise UsageError(f"device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)", "device")
    return torch.device(name)


def configure_float32(device: torch.device, allow_tf32: bool = False) -> None:
    """On CUDA, compute convolutions and matrix products in true float32 (the original's arithmetic) unless
    ``allow_tf32``: PyTorch lets cuDNN use TF32 tensor cores by default, which rounds inputs to 10 mantissa bits."""
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = allow_tf32
