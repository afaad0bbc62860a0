"""open_run: the device and execution resolved, the model loaded on the device with frozen parameters, its own
ProgramCache, the overwrite rule and config.yaml's resolved block; both jobs run in one."""

import pytest
import torch

from dvtoolbox.device import Execution
from dvtoolbox.errors import UsageError
from dvtoolbox.models.program_cache import ProgramCache
from dvtoolbox.run.context import ModelChoice, open_run
from tests.conftest import make_tiny


def test_a_run_resolves_the_device_and_the_execution_and_loads_the_model():
    context = open_run(ModelChoice("tiny_test"), "cpu", Execution("auto", "bf16"))
    assert context.device == torch.device("cpu")
    assert context.execution == Execution("eager", "bf16")  # auto is eager on every device
    assert not any(p.requires_grad for p in context.model.parameters())
    assert isinstance(context.programs, ProgramCache) and len(context.programs) == 0
    assert context.resolved({"size": [8, 8]}) == {"model": "tiny_test", "device": "cpu", "size": [8, 8],
                                                   "engine": "eager", "precision": "bf16"}


def test_each_run_has_its_own_programs():
    a = open_run(ModelChoice("tiny_test"), "cpu", Execution())
    b = open_run(ModelChoice("tiny_test"), "cpu", Execution())
    assert a.programs is not b.programs and a.model is not b.model


def test_a_module_is_named_by_its_class_and_a_caffe_net_by_its_prototxt():
    assert open_run(ModelChoice(make_tiny()), "cpu", Execution()).resolved()["model"] == "TinyNet"
    assert ModelChoice(deploy_proto="deploy.prototxt", net_weights="w").name == "caffe:deploy.prototxt"


def test_a_caffe_prototxt_needs_its_weights():
    with pytest.raises(UsageError, match="deploy_proto and net_weights go together"):
        open_run(ModelChoice(deploy_proto="deploy.prototxt"), "cpu", Execution())


def test_the_overwrite_rule_is_the_runs(tmp_path):
    existing = tmp_path / "a.png"
    existing.write_bytes(b"x")
    with pytest.raises(UsageError, match="cowardly refusing to overwrite"):
        open_run(ModelChoice("tiny_test"), "cpu", Execution()).check_outputs([str(existing)])
    open_run(ModelChoice("tiny_test"), "cpu", Execution(), brave=True).check_outputs([str(existing)])
    assert existing.read_bytes() == b"x"


def test_a_device_that_is_not_there_is_refused_before_the_model_is_loaded():
    with pytest.raises(UsageError, match="device must be cpu, cuda or cuda:N, got 'tpu'"):
        open_run(ModelChoice("no_such_model"), "tpu", Execution())
