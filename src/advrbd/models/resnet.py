"""CIFAR-style ResNet-18/34 (He et al., 2016): 3×3 stem, no max-pool, four stages of basic blocks,
global average pool. ``width`` scales every channel count (width 1: 64-128-256-512)."""
from __future__ import annotations

from torch import nn

from .base import Classifier, scaled
from .registry import MODELS


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def _resnet(blocks: tuple[int, ...], num_classes: int, width: float, in_channels: int) -> Classifier:
    c = [scaled(v, width) for v in (64, 128, 256, 512)]
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, c[0], 3, 1, 1, bias=False),
        nn.BatchNorm2d(c[0]),
        nn.ReLU(inplace=True),
    ]
    cin = c[0]
    for i, (cout, n) in enumerate(zip(c, blocks)):
        for j in range(n):
            layers.append(BasicBlock(cin, cout, 2 if (i > 0 and j == 0) else 1))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return Classifier(nn.Sequential(*layers), cin, num_classes, in_channels)


@MODELS.register("resnet18", "CIFAR-style ResNet-18 (3×3 stem, no max-pool); the paper's model at width 1")
def resnet18(num_classes: int = 10, width: float = 1.0, in_channels: int = 3) -> Classifier:
    return _resnet((2, 2, 2, 2), num_classes, width, in_channels)


@MODELS.register("resnet34", "CIFAR-style ResNet-34 (3×3 stem, no max-pool)")
def resnet34(num_classes: int = 10, width: float = 1.0, in_channels: int = 3) -> Classifier:
    return _resnet((3, 4, 6, 3), num_classes, width, in_channels)
