"""Where and how a run computes: the device by name, true float32 on CUDA unless TF32 is asked for, and the
execution of a loop's network step (``Execution``: engine and precision)."""

from __future__ import annotations

import re
from dataclasses import dataclass
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


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20  # glibc's largest: blocks up to 32 MiB come from the heap and are reused


def keep_freed_memory() -> bool:
    """Let this process reuse the memory it frees instead of handing it back to the system (glibc's ``mallopt``:
    blocks up to 32 MiB from the heap, the heap never trimmed). PyTorch's CPU tensors come from ``malloc``; by
    default glibc returns the pages of a freed 1 MB activation and faults fresh zeroed pages in for the next one:
    about 7,700 page faults (30 MB) per iteration of the DVT loop on EfficientNet-Lite0, none with this (measured
    with ``getrusage``; ``benchmarks/bench_optimize_loop.py``). The numbers computed are the same bits; the
    process keeps its peak memory. A process-wide setting, for a command line to make at its start (the library
    never calls it); True when applied (Linux with glibc), False elsewhere (nothing is changed)."""
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD,
                                                                                            1 << 30))
    except (OSError, AttributeError):
        return False


def configure_float32(device: torch.device, allow_tf32: bool = False) -> None:
    """On CUDA, compute convolutions and matrix products in true float32 (the original's arithmetic) unless
    ``allow_tf32``: PyTorch lets cuDNN use TF32 tensor cores by default, which rounds inputs to 10 mantissa bits."""
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = allow_tf32


# ---------------------------------------------------------------------------------------------------- execution

ENGINES = ("auto", "eager", "folded", "compiled", "graphs")
PRECISIONS = ("float32", "tf32", "bf16")
# What "auto" runs on each device type: eager everywhere, by decision rather than measurement: the one engine whose
# trajectory is the original's (bit for bit against the numpy restatement on Table 1's rows). Folded and compiled are
# faster on a CPU (per iteration at B = 1: 1.37x and 1.65x; compiled 2.07x at B = 8; doc/running-optimize-image.md
# "Engines and precision modes") but change float32 rounding, which lr 100 grows into another trajectory within ten
# iterations, so they are asked for by name; the GPU's modes are not measured yet.
AUTO_ENGINE = {"cpu": "eager", "cuda": "eager"}


@dataclass(frozen=True)
class Execution:
    """How the network part of a loop runs, and in which precision.

    engine: "eager" (the model as built: hooks, autograd; the original's arithmetic), "folded" (batch norms folded
    into the convolutions before them, float32 rounding), "compiled" (folded, then the forward to the pushed layer
    and the input-gradient backward traced into one graph and compiled by inductor), "graphs" (compiled, and the
    whole DVT iteration replayed as a CUDA graph; CUDA only), or "auto" (``AUTO_ENGINE``: eager on every device,
    chosen because its numbers are the original's, not because it was measured fastest).
    precision: "float32" (true float32, the default), "tf32" (CUDA's TF32 tensor cores for convolutions and
    matrix products, about 3 decimal digits; no effect on a CPU) or "bf16" (autocast of the forward and backward
    to bfloat16, about 2 decimal digits). The modes' measured deviations are in doc/running-optimize-image.md.
    """

    engine: str = "auto"
    precision: str = "float32"

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise UsageError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}", "engine")
        if self.precision not in PRECISIONS:
            raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}",
                             "precision")

    def on(self, device: torch.device) -> "Execution":
        """This execution with "auto" resolved for ``device``; "graphs" off CUDA is a UsageError."""
        engine = AUTO_ENGINE.get(device.type, "eager") if self.engine == "auto" else self.engine
        if engine == "graphs" and device.type != "cuda":
            raise UsageError(f"engine graphs replays CUDA graphs: it needs device cuda, got {device}; on "
                             f"{device.type} use engine compiled, folded or eager", "engine", "device")
        return Execution(engine, self.precision)

    @property
    def fold(self) -> bool:
        """Batch norms folded into convolutions (every engine but eager)."""
        return self.engine in ("folded", "compiled", "graphs")

    @property
    def compiled(self) -> bool:
        return self.engine in ("compiled", "graphs")

    @property
    def cuda_graphs(self) -> bool:
        return self.engine == "graphs"

    @property
    def autocast_dtype(self) -> Optional[torch.dtype]:
        """torch.bfloat16 for precision bf16, else None."""
        return torch.bfloat16 if self.precision == "bf16" else None

    @property
    def allow_tf32(self) -> bool:
        return self.precision == "tf32"

    def memory_format(self, device: torch.device) -> torch.memory_format:
        """The network's memory format: channels_last for the prepared engines on a CPU (oneDNN's NHWC kernels,
        measured faster there), the model's own otherwise (channels_last did not help on CUDA: README)."""
        if self.engine != "eager" and device.type == "cpu":
            return torch.channels_last
        return torch.contiguous_format


def configure_precision(device: torch.device, execution: Execution) -> None:
    """The process-wide part of a precision mode: TF32 on CUDA for "tf32", true float32 otherwise."""
    configure_float32(device, execution.allow_tf32)
