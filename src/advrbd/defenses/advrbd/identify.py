"""Stage 3: identification with the backdoor-enhanced model(s).

The paper's rule: samples the enhanced model still classifies as their given label are poisoned,
misclassified ones clean. The continuous score is the margin ``logit[given] − max other logit`` (> 0: kept).
``consensus`` (the default) takes the smallest margin over the models after every round: the enhanced
model's "sink" classes, which it predicts for most inputs, change from round to round, while a poison keeps
its target in every round.
"""
from __future__ import annotations

import torch

from ...train.infer import predict_logits
from ...types import ImageData


def label_margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """float ``N``: logit of label ``y`` minus the largest other logit."""
    own = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).max(1).values
    return own - other


def given_label_margin(model: torch.nn.Module, data: ImageData, batch_size: int = 1024) -> torch.Tensor:
    """float32 ``N`` (CPU): the model's margin of every sample's given label."""
    return label_margin(predict_logits(model, data, batch_size=batch_size), data.labels.cpu())


def round_margins(models: list[torch.nn.Module], data: ImageData) -> list[torch.Tensor]:
    """The given-label margin of every sample under each round's model."""
    return [given_label_margin(m, data) for m in models]


def combine(margins: list[torch.Tensor], rule: str) -> torch.Tensor:
    """The identification margin: the smallest over rounds (``consensus``) or the last round's (``paper``)."""
    if not margins:
        raise ValueError("identification needs at least one enhanced model")
    return torch.stack(margins).min(0).values if rule == "consensus" else margins[-1]
