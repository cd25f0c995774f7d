"""What relearning does with each sample: a pure function of the per-sample table (tested without training).

``guarded`` (default): a suspected sample is relabelled with the clean model's prediction when the model is
sure of a class other than the given one, and left out otherwise (a poison the clean model cannot read, such
as a blended image, would re-teach the trigger if it rejoined with the target label); a review-band sample
(kept by the enhanced models, but in a class without evidence of a backdoor) rejoins with its given label, so
clean training's blind spot for it does not stay; everything else trains with its given label.
``paper`` (Eq. 5): every suspected sample is relabelled with the clean model's prediction.
"""
from __future__ import annotations

import torch

from .table import LEAVE_OUT, RELABEL, REJOIN, TRAIN, SampleTable


def relearn_actions(table: SampleTable, given: torch.Tensor, policy: str,
                    min_confidence: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """(action int64 N, label int64 N) for relearning. Needs the ``suspected``, ``review``, ``clean_pred``
    and ``clean_conf`` columns."""
    suspected, review = table["suspected"], table["review"]
    pred, conf = table["clean_pred"], table["clean_conf"]
    action = torch.full_like(given, TRAIN)
    label = given.clone()
    if policy == "paper":
        action[suspected] = RELABEL
        label[suspected] = pred[suspected]
        return action, label
    if policy != "guarded":
        raise ValueError(f"unknown relearning policy {policy!r}")
    sure = suspected & (conf >= min_confidence) & (pred != given)
    action[suspected] = LEAVE_OUT
    action[sure] = RELABEL
    label[sure] = pred[sure]
    action[review & ~suspected] = REJOIN
    return action, label


def trained(action: torch.Tensor) -> torch.Tensor:
    """int64 indices relearning trains on (every action but leave-out)."""
    return (action != LEAVE_OUT).nonzero().flatten()
