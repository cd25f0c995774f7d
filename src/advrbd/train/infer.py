"""Batched inference on float [0,1] images or uint8 ``ImageData``."""
from __future__ import annotations

import contextlib

import torch

from .. import dist
from ..types import ImageData
from .precision import bf16_is_fast, precision_choice  # noqa: F401  (re-exported)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def autocast(device: torch.device, precision: str = "auto"):
    """Autocast context for ``precision``: "bf16" always bf16, "fp32" none, "auto" bf16 where it is faster
    (``bf16_is_fast``), else none."""
    if precision == "fp32" or (precision == "auto" and not bf16_is_fast(device.type)):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def model_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


@torch.no_grad()
def batched_apply(
    model: torch.nn.Module,
    data: ImageData | torch.Tensor,
    fn=None,
    batch_size: int = 1024,
    precision: str = "auto",
) -> torch.Tensor:
    """``fn(x)`` (default ``model(x)``; e.g. ``model.features``) over ``data`` in batches, with ``model`` in
    eval mode; returns float32 on the CPU, ``N×...``. data: ImageData (uint8) or float [0,1] NCHW.
    Under ``torchrun`` every rank must call it (each computes its share of the batches, all get all rows)."""
    fn = fn or model
    dev = model_device(model)
    was_training = model.training
    model.eval()
    n = len(data) if isinstance(data, ImageData) else data.shape[0]

    def one(s: int, e: int) -> torch.Tensor:
        if isinstance(data, ImageData):
            x = data.images[s:e].to(dev).permute(0, 3, 1, 2).float().div_(255)
        else:
            x = data[s:e].to(dev)
        x = x.contiguous(memory_format=torch.channels_last)
        with autocast(dev, precision):
            return fn(x).float().cpu()

    out = dist.map_batches(n, batch_size, one)  # under torchrun: batches shared by the ranks
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, 0)


def predict_logits(model: torch.nn.Module, data: ImageData | torch.Tensor, batch_size: int = 1024,
                   precision: str = "auto") -> torch.Tensor:
    """Logits (float32, CPU, ``N×K``) of ``model`` in eval mode on ``data``."""
    return batched_apply(model, data, None, batch_size, precision)


def predict(model: torch.nn.Module, data: ImageData | torch.Tensor, **kw) -> torch.Tensor:
    """Predicted labels (int64, CPU, ``N``)."""
    return predict_logits(model, data, **kw).argmax(1)


def accuracy(model: torch.nn.Module, data: ImageData, **kw) -> float:
    """Top-1 accuracy in percent on ``data``."""
    if len(data) == 0:
        return float("nan")
    return 100.0 * (predict(model, data, **kw) == data.labels).float().mean().item()
