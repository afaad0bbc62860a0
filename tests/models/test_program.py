"""The network step as one program: traced into one graph (forward to the captured layer and input-gradient
backward, hooks and the early stop run while tracing) it computes the eager step's bits, for the embedded model,
torchvision models, Caffe models (custom autograd functions, in-place blobs) and redirected ReLUs; what cannot be
traced is a UsageError naming the engine."""

import numpy as np
import pytest
import torch
import torchvision

from dvtoolbox.errors import UsageError
from dvtoolbox.models.adapter import wrap
from dvtoolbox.models.caffe import load_caffe_model
from dvtoolbox.models.capture import LayerCapture, forward_captured, gradient_source
from dvtoolbox.models.program import Program, prepare_network, signature
from dvtoolbox.models.redirected_relu import redirect_relus
from dvtoolbox.models.registry import create_model
from tests.models.caffe.helpers import ref_path


def unit_step(model, layer):
    """The DVT step: forward to ``layer`` (stopping there), backward from one unit per image into the input."""
    source = gradient_source(model, layer)
    capture = LayerCapture(model, {layer, source}, stop_when_complete=True)

    def step(x, channel):
        x = x.detach().requires_grad_(True)
        forward_captured(model, capture, x)
        outputs = dict(capture.outputs)
        capture.outputs.clear()
        pushed = outputs[source].flatten(2).amax(2) if outputs[source].dim() == 4 else outputs[source]
        value = pushed[torch.arange(x.shape[0]), channel].sum()
        (grad,) = torch.autograd.grad(value, x)
        return outputs[layer].detach(), grad

    return step


def _input(shape, seed=0, scale=40.0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * scale


def assert_traced_gives_eager_bits(model, layer, shape, channels):
    step = unit_step(model.requires_grad_(False), layer)
    x, channel = _input(shape), torch.as_tensor(channels)
    graph = Program(step, torch.device("cpu")).trace(x, channel)
    for got, want in zip(graph(x, channel), step(x, channel)):
        assert got.shape == want.shape and torch.equal(got, want)
    return graph


def test_tiny_net(tiny_model):
    graph = assert_traced_gives_eager_bits(tiny_model, "fc8", (3, 3, 8, 8), [0, 2, 4])
    assert "prob" not in graph.code and "_softmax" not in graph.code  # the early stop: the graph ends at fc8


def test_embedded_model_to_an_inner_layer():
    graph = assert_traced_gives_eager_bits(create_model("efficientnet_lite0"), "_blocks.5", (2, 3, 224, 224), [3, 7])
    ops = [str(n.target) for n in graph.graph.nodes]
    assert ops.count("aten.convolution.default") < 30  # blocks 6-15 and the head are not in the graph


def test_torchvision_model():
    torch.manual_seed(5)
    model = wrap(torchvision.models.resnet18(weights=None), classifier=True)
    assert_traced_gives_eager_bits(model, "layer3", (2, 3, 64, 64), [1, 200])


def test_caffe_reference_net_with_in_place_blobs_and_custom_backwards():
    """The traced graph keeps the strided first convolution's and the LRN's own backward passes and the in-place
    blobs' gradient sources; the CPU's row-skipping InnerProduct (a data-dependent path) becomes the plain product
    in a graph: the same sums in another order."""
    model = load_caffe_model(ref_path("tiny.prototxt"), ref_path("tiny.caffemodel")).eval()
    x = torch.from_numpy(np.load(ref_path("input.npy")))
    assert gradient_source(model, "conv2") != "conv2"  # backward starts before the in-place ReLU
    for layer, channels in (("conv2", [2]), ("fc2", [3]), ("prob", [6])):
        step = unit_step(model.requires_grad_(False), layer)
        channel = torch.as_tensor(channels * x.shape[0])
        graph = Program(step, torch.device("cpu")).trace(x, channel)
        ops = {str(n.target) for n in graph.graph.nodes}
        assert "aten.pixel_shuffle.default" in ops  # conv1's backward is StridedInputConv2d's own
        for got, want in zip(graph(x, channel), step(x, channel)):
            if layer == "conv2":
                assert torch.equal(got, want), layer
            else:
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6 * float(want.abs().max()))


def test_redirected_relus_keep_their_backward(tiny_model):
    with redirect_relus(tiny_model):
        step = unit_step(tiny_model.requires_grad_(False), "fc8")
        x = _input((2, 3, 8, 8), scale=1.0) - 300.0  # every ReLU dead: only the redirected gradient is non-zero
        graph = Program(step, torch.device("cpu")).trace(x, torch.as_tensor([1, 3]))
        got, want = graph(x, torch.as_tensor([1, 3]))[1], step(x, torch.as_tensor([1, 3]))[1]
    assert torch.count_nonzero(want) > 0 and torch.equal(got, want)


def test_one_graph_per_input_signature(tiny_model):
    step = unit_step(tiny_model.requires_grad_(False), "fc8")
    program = Program(step, torch.device("cpu"), compiled=True, compile_options={"backend": "eager"})
    for batch in (2, 2, 3):
        out = program(_input((batch, 3, 8, 8)), torch.zeros(batch, dtype=torch.long))
        assert out[1].shape == (batch, 3, 8, 8)
    assert len(program._graphs) == 2
    assert signature((torch.zeros(2, 3),)) == (((2, 3), torch.float32, (3, 1), torch.device("cpu")),)


def test_data_dependent_python_cannot_be_traced():
    def step(x):
        return (x * 2,) if x.sum() > 0 else (x,)  # reads a value back to the host

    with pytest.raises(UsageError, match="engine compiled: branchy cannot be traced into one graph") as err:
        Program(step, torch.device("cpu"), compiled=True, name="branchy")(torch.ones(2))
    assert err.value.fields == ("engine",)


def test_eager_program_runs_the_function_under_bf16_autocast(tiny_model):
    step = unit_step(tiny_model.requires_grad_(False), "fc8")
    x, channel = _input((2, 3, 8, 8)), torch.as_tensor([0, 1])
    acts, grad = Program(step, torch.device("cpu"), autocast_dtype=torch.bfloat16)(x, channel)
    ref_acts, ref_grad = step(x, channel)
    assert acts.dtype == torch.bfloat16 and grad.dtype == torch.float32
    torch.testing.assert_close(acts.float(), ref_acts, rtol=2e-2, atol=2e-2)


def test_prepared_network_folds_except_the_kept_layers_and_converts_the_memory_format():
    model = create_model("efficientnet_lite0")
    example = torch.zeros(1, 3, 224, 224)
    assert prepare_network(model, {"fc8"}, example) is model
    prepared = prepare_network(model, {"_blocks.3._depthwise_conv"}, example, fold=True,
                               memory_format=torch.channels_last)
    assert isinstance(prepared._blocks[2]._bn1, torch.nn.Identity)
    assert isinstance(prepared._blocks[3]._bn1, torch.nn.BatchNorm2d)
    assert prepared._conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    assert model._conv_stem.weight.is_contiguous() and isinstance(model._blocks[2]._bn1, torch.nn.BatchNorm2d)
