"""The one training loop, augmentation and inference helpers."""
from .infer import accuracy, predict, predict_logits, resolve_device
from .loop import FitResult, TrainConfig, fit, lr_factor

__all__ = ["FitResult", "TrainConfig", "accuracy", "fit", "lr_factor", "predict", "predict_logits", "resolve_device"]
