"""Model registry and factory. Every model takes float [0,1] NCHW input and normalizes inside."""
from __future__ import annotations

import importlib

from torch import nn

from ..errors import BadInputError
from . import fastnet, mobilenetv2, resnet  # noqa: F401  (registration)
from .base import Classifier, Normalize
from .registry import MODELS

__all__ = ["MODELS", "Classifier", "Normalize", "create_model"]


def create_model(name: str, num_classes: int = 10, width: float | None = None, in_channels: int = 3) -> nn.Module:
    """Build a registered model, or a user's model given as ``package.module:callable``.

    A user callable is called as ``callable(num_classes=...)`` and must return an ``nn.Module`` taking
    float [0,1] NCHW input.
    """
    if ":" in name:
        mod_name, _, attr = name.partition(":")
        try:
            fn = getattr(importlib.import_module(mod_name), attr)
        except (ImportError, AttributeError) as e:
            raise BadInputError(f"cannot import model {name!r}: {e}") from None
        model = fn(num_classes=num_classes)
        if not isinstance(model, nn.Module):
            raise BadInputError(f"model callable {name!r} returned {type(model).__name__}, not nn.Module")
        return model
    factory = MODELS.get(name)
    kwargs = {"num_classes": num_classes, "in_channels": in_channels}
    if width is not None:
        kwargs["width"] = width
    return factory(**kwargs)
