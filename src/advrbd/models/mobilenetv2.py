"""MobileNetV2 (Sandler et al., 2018), CIFAR variant: stride-1 stem and first stages (32×32 inputs keep
resolution longer), inverted residual blocks with expansion 6, 1280-d features before the head."""
from __future__ import annotations

from torch import nn

from .base import Classifier, scaled
from .registry import MODELS

# (expansion t, channels c, repeats n, stride s); CIFAR variant uses stride 1 in the second row.
_CFG = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        out = self.block(x)
        return x + out if self.residual else out


@MODELS.register("mobilenetv2", "MobileNetV2, CIFAR variant (stride-1 stem); slowest model on CPU")
def mobilenetv2(num_classes: int = 10, width: float = 1.0, in_channels: int = 3) -> Classifier:
    cin = scaled(32, width)
    layers: list[nn.Module] = [nn.Conv2d(in_channels, cin, 3, 1, 1, bias=False), nn.BatchNorm2d(cin), nn.ReLU6(True)]
    for t, c, n, s in _CFG:
        cout = scaled(c, width)
        for i in range(n):
            layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
            cin = cout
    last = scaled(1280, max(1.0, width))
    layers += [nn.Conv2d(cin, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6(True)]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return Classifier(nn.Sequential(*layers), last, num_classes, in_channels)
