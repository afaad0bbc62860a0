"""Where image parameterisations draw their random initial values from, and on which device they live.

Every parameterisation takes ``generator`` (a ``torch.Generator``) and ``device``. Explicit arguments win; when one
is None it comes from the innermost ``param_defaults(generator=..., device=...)`` block, which is how
``FeatureViz.visualize(seed=..., device=...)`` seeds a ``param_f`` written as ``lambda: get_image(224)``; outside
any block, torch's default generator of the device is used (``torch.manual_seed`` seeds it), on the CPU unless the
generator says otherwise. A generator must live on the device the tensors are drawn on.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator, Optional, Sequence, Tuple, Union

import torch

DeviceLike = Union[str, torch.device, None]

_DEFAULTS: contextvars.ContextVar = contextvars.ContextVar("dvtoolbox_optvis_param_defaults", default=(None, None))


@contextlib.contextmanager
def param_defaults(generator: Optional[torch.Generator] = None, device: DeviceLike = None) -> Iterator[None]:
    """Inside the block, parameterisations called without ``generator`` / ``device`` use these."""
    token = _DEFAULTS.set((generator, None if device is None else torch.device(device)))
    try:
        yield
    finally:
        _DEFAULTS.reset(token)


def resolve(generator: Optional[torch.Generator], device: DeviceLike) -> Tuple[Optional[torch.Generator], torch.device]:
    """The (generator, device) a parameterisation uses: arguments, then ``param_defaults``, then the generator's
    device, then the CPU. A generator on another device than ``device`` is a ValueError."""
    ctx_generator, ctx_device = _DEFAULTS.get()
    generator = generator if generator is not None else ctx_generator
    if device is None:
        device = ctx_device if ctx_device is not None else (generator.device if generator is not None else "cpu")
    device = torch.device(device)
    if generator is not None and generator.device.type != device.type:
        raise ValueError(f"the generator lives on {generator.device} but the tensors go to {device}; "
                         f"make the generator with torch.Generator(device={str(device)!r})")
    return generator, device


def randn(shape: Sequence[int], sd: float, generator: Optional[torch.Generator], device: torch.device) -> torch.Tensor:
    """``sd`` times standard normal values of ``shape``, float32 on ``device``, drawn from ``generator``."""
    return torch.randn(tuple(shape), generator=generator, device=device, dtype=torch.float32) * sd
