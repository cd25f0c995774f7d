"""Stage 3: identification with the backdoor-enhanced model.

Samples the enhanced model still classifies as their given label are poisoned; misclassified ones are
clean. The continuous score is the margin ``logit[given] − max other logit`` (higher = more
suspicious); the verdict is ``margin > 0``, i.e. the paper's rule with threshold 0.
"""
from __future__ import annotations

import torch

from ...train.infer import predict_logits
from ...types import ImageData


def given_label_margin(model: torch.nn.Module, data: ImageData, batch_size: int = 1024) -> torch.Tensor:
    """float32 ``N``: logit of the given label minus the largest other logit."""
    logits = predict_logits(model, data, batch_size=batch_size)
    y = data.labels
    own = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).max(1).values
    return own - other


def identify(model: torch.nn.Module, data: ImageData) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(suspected bool N, score float N, threshold)."""
    margin = given_label_margin(model, data)
    return margin > 0, margin, 0.0
