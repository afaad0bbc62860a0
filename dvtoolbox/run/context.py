"""One run's context, the same for both jobs (``optimize.job`` and ``optvis.job``): ``open_run(model, ...)``.

    context = open_run(ModelChoice("resnet50"), device=None, execution=Execution("auto", "float32"), brave=False)
    context.check_outputs(paths)                     # the overwrite rule, before any work
    ... context.model, context.device, context.execution, context.programs ...
    config["resolved"] = context.resolved(...)       # what config.yaml records of what the run resolved

Opening a run resolves the device (``device.resolve_device``; under torchrun ``cuda`` is the rank's GPU), the
execution for it (``Execution.on``), sets the process-wide part of the precision (true float32 or TF32 on CUDA),
loads the model (``models.load.load_model``, or a Caffe net from a prototxt and its weights) on that device with
its parameters frozen, and gives it a ``ProgramCache`` (its prepared networks and compiled programs, freed with the
context). This is the only place a job loads a model (``tests/test_architecture.py`` keeps it so).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from dvtoolbox.device import Execution, configure_precision, resolve_device
from dvtoolbox.errors import UsageError
from dvtoolbox.io.outputs import check_writable
from dvtoolbox.models.load import load_model
from dvtoolbox.models.program_cache import ProgramCache
from dvtoolbox.models.registry import DEFAULT_MODEL, create_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelChoice:
    """Which network a job runs, as ``models.load.load_model`` takes it, or a Caffe net.

    model: a name, ``package.module:factory``, a saved-module file or an nn.Module; weights: the named model's
    ("default", a path, None for random). input_mean / input_std (RGB, 0..1 scale) and size ((H, W)) apply to a
    network without an input contract. deploy_proto with net_weights: a Caffe net (then ``model`` is not used).
    """

    model: Union[str, nn.Module] = DEFAULT_MODEL
    weights: Union[None, str] = "default"
    input_mean: Optional[Tuple[float, float, float]] = None
    input_std: Optional[Tuple[float, float, float]] = None
    size: Optional[Tuple[int, int]] = None
    deploy_proto: Optional[str] = None
    net_weights: Optional[str] = None
    first_image: Optional[Tuple[int, int]] = None
    trust_model_file: bool = False

    @property
    def name(self) -> str:
        """The model as config.yaml records it: ``caffe:<prototxt>``, the name given, or the module's class."""
        if self.deploy_proto:
            return "caffe:" + self.deploy_proto
        return self.model if isinstance(self.model, str) else type(self.model).__name__

    def load(self) -> nn.Module:
        """The network, on the CPU, in eval mode, taking dvtoolbox's pixel space."""
        if self.deploy_proto is not None or self.net_weights is not None:
            if self.deploy_proto is None or self.net_weights is None:
                raise UsageError("deploy_proto and net_weights go together: give both for a Caffe model",
                                 "deploy_proto", "net_weights")
            return create_model("caffe:" + self.deploy_proto, weights=self.net_weights)
        return load_model(self.model, self.weights, self.input_mean, self.input_std, self.size,
                          first_image=self.first_image, trust_model_file=self.trust_model_file)


@dataclass
class RunContext:
    """A job's device, resolved execution, model (on the device, parameters frozen) and its programs; ``brave``
    is the overwrite rule (``check_outputs``)."""

    choice: ModelChoice
    device: torch.device
    execution: Execution
    model: nn.Module
    brave: bool = False
    programs: ProgramCache = field(default_factory=ProgramCache)

    def check_outputs(self, paths: Sequence[str]) -> None:
        """Before any work: nothing in ``paths`` is overwritten without brave, and their folders are writable."""
        check_writable(list(paths), self.brave)

    def resolved(self, middle: Optional[Dict[str, object]] = None) -> Dict[str, object]:
        """config.yaml's ``resolved`` block: model, device, then the job's ``middle`` entries, then the engine and
        precision that ran (``auto`` resolved)."""
        return {"model": self.choice.name, "device": str(self.device), **(middle or {}),
                "engine": self.execution.engine, "precision": self.execution.precision}


def open_run(choice: ModelChoice, device: Optional[str], execution: Execution, brave: bool = False,
             local_rank: Optional[int] = None) -> RunContext:
    """The context of one run (see the module docstring). device: "cpu", "cuda", "cuda:N" or None (cuda when
    present); local_rank: under torchrun, the rank's GPU for a plain "cuda"."""
    where = resolve_device(device)
    if local_rank is not None and where.type == "cuda" and where.index is None:
        where = torch.device("cuda", local_rank)
    resolved = execution.on(where)
    configure_precision(where, resolved)
    model = choice.load().to(where)
    model.requires_grad_(False)
    return RunContext(choice, where, resolved, model, brave)
