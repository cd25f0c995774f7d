"""Model registry and factory. Every model takes float [0,1] NCHW input and normalizes inside."""
from __future__ import annotations

from torch import nn

from ..errors import BadInputError
from . import fastnet, mobilenetv2, resnet  # noqa: F401  (registration)
from .adapter import check_model, last_linear, load_factory, penultimate
from .base import Classifier, Normalize
from .registry import MODELS

__all__ = ["MODELS", "Classifier", "Normalize", "check_model", "create_model", "last_linear", "load_factory",
           "penultimate"]


def create_model(name: str, num_classes: int = 10, width: float | None = None, in_channels: int = 3) -> nn.Module:
    """Build a registered model, or a user's model given as ``package.module:callable`` or
    ``path/to/file.py:callable``.

    A user callable is called as ``callable(num_classes=...)`` and must return an ``nn.Module`` taking
    float [0,1] NCHW input.
    """
    if ":" in name:
        fn = load_factory(name)
        try:
            model = fn(num_classes=num_classes)
        except Exception as e:  # noqa: BLE001 - the user's factory failing is bad input, said in one line
            raise BadInputError(f"model factory {name!r} failed: {type(e).__name__}: {e}") from None
        if not isinstance(model, nn.Module):
            raise BadInputError(f"model callable {name!r} returned {type(model).__name__}, not nn.Module")
        return model
    factory = MODELS.get(name)
    kwargs = {"num_classes": num_classes, "in_channels": in_channels}
    if width is not None:
        kwargs["width"] = width
    return factory(**kwargs)
