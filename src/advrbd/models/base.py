"""The model contract: input float ``[0,1]`` NCHW, normalization is the first layer,
``features(x) -> N×D``, ``head`` a ``nn.Linear(D, num_classes)``, ``forward = head(features(x))``."""
from __future__ import annotations

import torch
from torch import nn

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; x in [0,1]. Buffers move with the model."""

    def __init__(self, mean=CIFAR_MEAN, std=CIFAR_STD, channels: int = 3):
        super().__init__()
        mean = tuple(mean)[:channels] if len(mean) >= channels else (sum(mean) / len(mean),) * channels
        std = tuple(std)[:channels] if len(std) >= channels else (sum(std) / len(std),) * channels
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """Normalize -> body (-> N×D features) -> linear head."""

    def __init__(self, body: nn.Module, feature_dim: int, num_classes: int, in_channels: int = 3):
        super().__init__()
        self.normalize = Normalize(channels=in_channels)
        self.body = body
        self.feature_dim = feature_dim
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def scaled(channels: int, width: float) -> int:
    """Channel count times the width multiplier, at least 4."""
    return max(4, int(round(channels * width)))
