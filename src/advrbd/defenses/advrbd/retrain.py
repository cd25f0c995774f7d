"""Stages 4 and 5: clean training from scratch on the samples identified as clean, then relabel the
suspected samples with the clean model's prediction and fine-tune on the whole relabelled set (Eq. 5)."""
from __future__ import annotations

import torch

from ...train.infer import predict_logits
from ...train.loop import TrainConfig, fit
from ...types import ImageData


def clean_training(model: torch.nn.Module, data: ImageData, suspected: torch.Tensor, recipe: TrainConfig,
                   epochs: int, checkpoint=None, progress: bool = False) -> None:
    """Train the freshly initialised ``model`` in place on the unsuspected samples."""
    keep = (~suspected).nonzero().flatten()
    cfg = TrainConfig(**{**recipe.__dict__, "epochs": epochs})
    fit(model, data, cfg, indices=keep, checkpoint=checkpoint, progress="clean training" if progress else False)


def relabel(model: torch.nn.Module, data: ImageData, suspected: torch.Tensor, min_confidence: float = 0.0) -> torch.Tensor:
    """int64 N: the clean model's prediction for suspected samples, the given label elsewhere.

    A suspected sample keeps its given label when the clean model's top probability is below
    ``min_confidence``. Why: clean samples of the target class are flagged together with the poisons (the
    enhanced model classifies them "correctly"), so the clean model has barely seen that class and can
    only guess for them; poisoned images are ordinary images of their source class, which it recognises.
    """
    probs = predict_logits(model, data).softmax(1)
    conf, pred = probs.max(1)
    return torch.where(suspected & (conf >= min_confidence), pred, data.labels)


def relearn_indices(data: ImageData, suspected: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """int64 indices relearning trains on: every unsuspected sample, and the suspected ones the clean model
    relabelled (its label differs from the given one).

    A suspected sample whose given label the clean model confirms (or is unsure of) carries nothing to
    correct, and it cannot be told apart from a clean-label poison (SIG: the poisons are genuine
    target-class images): fine-tuning on it re-taught the trigger (quick CIFAR-10, SIG: ASR 95 -> 9.9%
    with it). The clean model was trained without it already, so leaving it out costs nothing more.
    """
    return (~suspected | (labels != data.labels)).nonzero().flatten()


def relearn(model: torch.nn.Module, data: ImageData, labels: torch.Tensor, indices: torch.Tensor,
            recipe: TrainConfig, epochs: int, lr: float, checkpoint=None, progress: bool = False) -> None:
    """Fine-tune ``model`` in place on ``data[indices]`` with ``labels`` (Eq. 5), ``lr`` peak, no warm-up."""
    cfg = TrainConfig(**{**recipe.__dict__, "epochs": epochs, "lr": lr, "warmup": 0.0})
    fit(model, data, cfg, labels=labels, indices=indices, checkpoint=checkpoint,
        progress="relearning" if progress else False)
