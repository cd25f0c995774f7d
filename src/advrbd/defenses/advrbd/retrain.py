"""Stages 4 and 5: clean training from scratch on the samples not flagged, then relabel and relearn (Eq. 5):
fine-tune the clean model on the actions policy.py chose for every sample."""
from __future__ import annotations

import torch

from ...train.infer import predict_logits
from ...train.loop import TrainConfig, fit
from ...types import ImageData


def clean_training(model: torch.nn.Module, data: ImageData, excluded: torch.Tensor, recipe: TrainConfig,
                   epochs: int, checkpoint=None, progress: bool = False) -> None:
    """Train the freshly initialised ``model`` in place on the samples not ``excluded`` (bool N)."""
    cfg = TrainConfig(**{**recipe.__dict__, "epochs": epochs})
    fit(model, data, cfg, indices=(~excluded).nonzero().flatten(), checkpoint=checkpoint,
        progress="clean training" if progress else False)


def clean_predictions(model: torch.nn.Module, data: ImageData) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted class int64 N, top probability float32 N) of the clean model."""
    conf, pred = predict_logits(model, data).softmax(1).max(1)
    return pred, conf


def relearn(model: torch.nn.Module, data: ImageData, labels: torch.Tensor, indices: torch.Tensor,
            recipe: TrainConfig, epochs: int, lr: float, checkpoint=None, progress: bool = False) -> None:
    """Fine-tune ``model`` in place on ``data[indices]`` with ``labels``, peak ``lr``, no warm-up."""
    cfg = TrainConfig(**{**recipe.__dict__, "epochs": epochs, "lr": lr, "warmup": 0.0})
    fit(model, data, cfg, labels=labels, indices=indices, checkpoint=checkpoint,
        progress="relearning" if progress else False)
