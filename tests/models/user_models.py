"""Models "of the user's own", for the tests of package.module:factory and of plain modules."""

import torch
from torch import nn


def tiny_sequential() -> nn.Module:
    """An nn.Sequential as a user writes it: conv (3 -> 4, 3x3), ReLU, pooling, flatten, linear (4 -> 3). Fixed
    weights: channel k of the conv is k + 1 times the sum over the 3x3 window of input channel k % 3."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3))
    with torch.no_grad():
        weight = torch.zeros(4, 3, 3, 3)
        for k in range(4):
            weight[k, k % 3] = k + 1.0
        model[0].weight.copy_(weight)
        model[0].bias.zero_()
    return model


def not_a_module():
    return 42


def vit32() -> nn.Module:
    """torchvision's VisionTransformer (vit_b_16's architecture, tiny) built for 32-pixel images: patches 8x8 (a 4x4
    grid plus the class token), one layer, hidden 16, 5 classes; random weights seeded with 0. It declares
    ``image_size = 32`` and asserts it."""
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=2,
                                                hidden_dim=16, mlp_dim=32, num_classes=5)


def timm_vit32() -> nn.Module:
    """timm's ViT with ``img_size=32`` (patches 8x8, depth 1, width 16, 5 classes; random weights seeded with 0):
    its ``pretrained_cfg`` still says 224, its patch embedding asserts 32."""
    import timm

    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=1,
                             embed_dim=16, num_heads=2, num_classes=5)


class FixedSizeNet(nn.Module):
    """A user's conv net for (H, W) = ``size`` only: conv (3 -> 4, 3x3), ReLU, flatten, linear (4*H*W -> 3), seeded
    with 0. ``declare``: say the size in a ``default_size`` attribute; the forward pass asserts it either way."""

    def __init__(self, size, declare: bool):
        super().__init__()
        torch.manual_seed(0)
        if declare:
            self.default_size = size
        self.size = tuple(size)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * size[0] * size[1], 3)

    def forward(self, x):
        assert tuple(x.shape[-2:]) == self.size, f"this net takes {self.size} images"
        return self.fc(self.relu(self.conv(x)).flatten(1))


def declares_24x20() -> nn.Module:
    """A FixedSizeNet for 24x20 images that says so: ``default_size = (24, 20)``."""
    return FixedSizeNet((24, 20), declare=True)


def silent_16() -> nn.Module:
    """A FixedSizeNet for 16x16 images that does not say so."""
    return FixedSizeNet((16, 16), declare=False)


def raises():
    """A factory whose code fails."""
    raise ValueError("no weights for this size")


def needs_args(width):
    """A factory that needs an argument the command line cannot give."""
    return nn.Linear(width, 3)


class TinyNet(nn.Module):
    """A class of the user's own (not on the module-file allow-list): tiny_sequential's layers."""

    def __init__(self):
        super().__init__()
        self.body = tiny_sequential()

    def forward(self, x):
        return self.body(x)


class PayloadNet(TinyNet):
    """A user class whose unpickling writes ``marker`` (a file path kept in its state): a payload's stand-in."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker

    def __setstate__(self, state):
        with open(state["marker"], "w") as handle:
            handle.write("the payload ran")
        super().__setstate__(state)


class Payload:
    """An object whose unpickling calls ``builtins.open(marker, "w")``: it creates ``marker``."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")
