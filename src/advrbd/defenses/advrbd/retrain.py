"""Stages 4 and 5: clean training from scratch on the samples identified as clean, then relabel the
suspected samples with the clean model's prediction and fine-tune on the whole relabelled set (Eq. 5)."""
from __future__ import annotations

import logging

import torch

from ...train.infer import accuracy, predict_logits
from ...train.loop import TrainConfig, fit
from ...types import ImageData

log = logging.getLogger(__name__)


MAX_RETRIES = 2  # further seeds tried when a clean training did not learn


def clean_training(new_model, data: ImageData, suspected: torch.Tensor, recipe: TrainConfig, epochs: int,
                   checkpoint=None, progress: bool = False) -> tuple[torch.nn.Module, int]:
    """Train from scratch on the unsuspected samples. Returns (model, retries).

    A run that ends fitting fewer than 3/C of its own training samples did not learn (measured once on
    CIFAR-10 quick + PhysicalBA: the loss rose during the learning-rate warm-up and stayed at chance, test
    ACC 16.8%); it is repeated with the next seed, at most ``MAX_RETRIES`` times, and the best one kept.
    """
    keep = (~suspected).nonzero().flatten()
    subset = data.subset(keep)
    best, best_acc = None, -1.0
    for retry in range(MAX_RETRIES + 1):
        model = new_model()
        cfg = TrainConfig(**{**recipe.__dict__, "epochs": epochs, "seed": recipe.seed + retry})
        fit(model, data, cfg, indices=keep, checkpoint=checkpoint, progress="clean training" if progress else False)
        acc = accuracy(model, subset) / 100 if len(keep) else 1.0  # nothing kept: nothing to learn
        if best is None or acc > best_acc:
            best, best_acc = model, acc
        if acc >= 3 / data.num_classes:
            break
        log.warning("clean training fit %.1f%% of its own samples (chance %.1f%%): retrying with seed %d",
                    100 * acc, 100 / data.num_classes, recipe.seed + retry + 1)
    return best, retry


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
