"""Batch norms folded into convolutions: which pairs fold (read from the data flow), exact in float64, float32
rounding in float32, the input model untouched."""

import copy

import pytest
import torch
from torch import nn

from dvtoolbox.models.capture import LayerCapture
from dvtoolbox.models.fold import conv_bn_pairs, fold_batch_norms, folded_conv_parameters
from dvtoolbox.models.layers import Conv2dSame
from dvtoolbox.models.registry import create_model


def _randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Seeded weights and batch-norm statistics far from the identity (so a wrong fold shows)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=gen))
                module.running_var.copy_(torch.rand(module.num_features, generator=gen) * 2 + 0.1)
                module.weight.copy_(torch.randn(module.num_features, generator=gen))
                module.bias.copy_(torch.randn(module.num_features, generator=gen))
            elif isinstance(module, nn.Conv2d):
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * 0.3)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=gen))
    return model.eval().requires_grad_(False)


class Net(nn.Module):
    """a -> bn_a (foldable); b (SAME padding, no bias) -> bn_b (foldable); c -> bn_c and c read again by the
    residual add (not foldable); d -> in-place ReLU -> bn_d (not foldable); e called twice -> bn_e (not foldable)."""

    def __init__(self):
        super().__init__()
        self.a, self.bn_a = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.b, self.bn_b = Conv2dSame(4, 4, 3, 2, groups=4, bias=False), nn.BatchNorm2d(4)
        self.c, self.bn_c = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)
        self.d, self.relu_d, self.bn_d = nn.Conv2d(4, 4, 1), nn.ReLU(inplace=True), nn.BatchNorm2d(4)
        self.e, self.bn_e = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.bn_b(self.b(torch.relu(self.bn_a(self.a(x)))))
        c = self.c(y)
        y = self.bn_c(c) + c
        y = self.bn_d(self.relu_d(self.d(y)))
        return self.bn_e(self.e(self.e(y))).mean((2, 3))


@pytest.fixture
def net():
    return _randomise(Net())


def test_pairs_are_read_from_the_data_flow(net):
    assert conv_bn_pairs(net, torch.zeros(1, 3, 9, 9)) == [("a", "bn_a"), ("b", "bn_b")]


def test_a_kept_convolution_is_not_folded(net):
    assert conv_bn_pairs(net, torch.zeros(1, 3, 9, 9), keep={"a"}) == [("b", "bn_b")]


def test_folding_is_exact_in_float64_and_float32_rounding_in_float32(net):
    x = torch.randn(2, 3, 9, 9, generator=torch.Generator().manual_seed(1)) * 5
    reference = copy.deepcopy(net).double()(x.double())
    folded64, pairs = fold_batch_norms(copy.deepcopy(net).double(), x.double())
    assert pairs == [("a", "bn_a"), ("b", "bn_b")]
    torch.testing.assert_close(folded64(x.double()), reference, rtol=1e-12, atol=1e-12)
    folded32, _ = fold_batch_norms(net, x)
    out32 = folded32(x)
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), reference, rtol=2e-5, atol=2e-5)
    assert isinstance(folded32.bn_a, nn.Identity) and isinstance(folded32.bn_b, nn.Identity)  # a fold, not a copy
    assert not torch.equal(folded32.a.weight, net.a.weight)


def test_the_input_model_is_untouched_and_names_stay(net):
    before = {k: v.clone() for k, v in net.state_dict().items()}
    folded, _ = fold_batch_norms(net, torch.zeros(1, 3, 9, 9))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert isinstance(net.bn_a, nn.BatchNorm2d) and isinstance(folded.bn_a, nn.Identity)
    assert folded.a.bias is not None and net.a.bias is not None and folded.b.bias is not None and net.b.bias is None
    with LayerCapture(folded, ["bn_b"]) as cap:  # the batch norm's name still gives its output
        folded(torch.ones(1, 3, 9, 9))
    with LayerCapture(net, ["bn_b"]) as ref:
        net(torch.ones(1, 3, 9, 9))
    torch.testing.assert_close(cap.outputs["bn_b"], ref.outputs["bn_b"], rtol=1e-5, atol=1e-5)


def test_no_pair_returns_the_model_itself(tiny_model):
    folded, pairs = fold_batch_norms(tiny_model, torch.zeros(1, 3, 8, 8))
    assert folded is tiny_model and pairs == []


def test_folded_parameters_by_hand():
    conv, norm = nn.Conv2d(1, 2, 1, bias=True), nn.BatchNorm2d(2, eps=0.0).eval()
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([2.0, 3.0]).view(2, 1, 1, 1))
        conv.bias.copy_(torch.tensor([1.0, -1.0]))
        norm.running_mean.copy_(torch.tensor([0.5, 1.0]))
        norm.running_var.copy_(torch.tensor([4.0, 0.25]))
        norm.weight.copy_(torch.tensor([1.0, 3.0]))
        norm.bias.copy_(torch.tensor([0.0, 2.0]))
    weight, bias = folded_conv_parameters(conv, norm)
    # s = gamma / sqrt(var): 0.5, 6; W s = 1, 18; (b - mean) s + beta = 0.25, -12 + 2
    assert weight.flatten().tolist() == [1.0, 18.0] and bias.tolist() == [0.25, -10.0]


def test_efficientnet_lite0_folds_every_convolution_pair():
    model = create_model("efficientnet_lite0")
    pairs = conv_bn_pairs(model, torch.zeros(1, 3, 224, 224))
    assert len(pairs) == 49  # stem, 2 in block 0, 3 in each of blocks 1-15, head
    assert pairs[0] == ("_conv_stem", "_bn0") and pairs[-1] == ("_conv_head", "_bn1")
    assert ("_blocks.3._depthwise_conv", "_blocks.3._bn1") in pairs
    kept = conv_bn_pairs(model, torch.zeros(1, 3, 224, 224), keep={"_blocks.3._depthwise_conv"})
    assert len(kept) == 48 and ("_blocks.3._depthwise_conv", "_blocks.3._bn1") not in kept
