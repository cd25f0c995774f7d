"""A user's own model given as ``module:callable`` (used by test_models)."""
from torch import nn


def make(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))


def make_mlp(num_classes: int = 10) -> nn.Module:
    """A plain nn.Sequential without features(): penultimate activations come from a hook on the last Linear."""
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(64), nn.ReLU(), nn.Linear(64, num_classes))


def make_no_linear(num_classes: int = 10) -> nn.Module:
    """Logits from a 1×1 convolution: usable for training, not for defenses reading penultimate activations."""
    return nn.Sequential(nn.Conv2d(3, num_classes, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
