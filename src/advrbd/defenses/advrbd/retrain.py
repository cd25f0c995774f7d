"""Stages 4 and 5: clean training from scratch on the samples identified as clean, then relabel the
suspected samples with the clean model's prediction and fine-tune on the whole relabelled set (Eq. 5).

Departure from the paper (``relearn_unlearn_weight``, settings.py): suspected samples whose given label the
clean model confirms are unlearned during relearning (bounded gradient ascent, the loss of Eq. 4's clean
pool) instead of being left out. Why: a strong trigger is relearned from the few poisons identification
misses (quick CIFAR-10: the clean model's ASR is 92.9% from 33 missed TaCT poisons, 71.7% from 51 SIG
poisons); the clean model then confirms the flagged poisons' (target) label, so relabelling cannot correct
them, while unlearning them removes the trigger's pull. Second departure (``rejoin_quantile``): suspected
samples the clean model does not relabel rejoin relearning with their given label when their consistency score
is high (``rejoin_mask``); those are neither left out nor unlearned. Neither departure applies to the
latent guard's subgroup (``relearn_masks``), and with the guard on, by default (``trust_unguarded``) the
suspects outside it rejoin as they are: only the subgroup is relabelled or left out.
"""
from __future__ import annotations

import math

import torch

from ...train.infer import predict_logits, resolve_device
from ...train.loop import TrainConfig, fit
from ...types import ImageData
from .enhance import bounded_unlearning_loss


def clean_training(model: torch.nn.Module, data: ImageData, suspected: torch.Tensor, recipe: TrainConfig,
                   epochs: int, checkpoint=None, progress: bool = False) -> None:
    """Train the freshly initialised ``model`` in place on the unsuspected samples."""
    keep = (~suspected).nonzero().flatten()
    cfg = TrainConfig(**{**recipe.__dict__, "epochs": epochs})
    fit(model, data, cfg, indices=keep, checkpoint=checkpoint, progress="clean training" if progress else False)


def relabel(model: torch.nn.Module, data: ImageData, suspected: torch.Tensor,
            min_confidence: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels int64 N, confirmed bool N). labels: the clean model's prediction for suspected samples, the
    given label elsewhere; confirmed: suspected samples whose given label the clean model predicts with top
    probability ≥ ``min_confidence``.

    A suspected sample keeps its given label when the clean model's top probability is below
    ``min_confidence``. Why: clean samples of the target class are flagged together with the poisons (the
    enhanced model classifies them "correctly"), so the clean model has barely seen that class and can
    only guess for them; poisoned images are ordinary images of their source class, which it recognises.
    """
    probs = predict_logits(model, data).softmax(1)
    conf, pred = probs.max(1)
    sure = suspected & (conf >= min_confidence)
    return torch.where(sure, pred, data.labels), sure & (pred == data.labels)


def relearn_indices(data: ImageData, suspected: torch.Tensor, labels: torch.Tensor,
                    rejoin: torch.Tensor | None = None) -> torch.Tensor:
    """int64 indices relearning trains on: every unsuspected sample, the suspected ones the clean model
    relabelled (its label differs from the given one), and those marked in ``rejoin`` (bool N).

    A suspected sample whose given label the clean model confirms carries nothing to correct, and it cannot
    be told apart from a clean-label poison (SIG: the poisons are genuine target-class images): fine-tuning
    on it re-taught the trigger (quick CIFAR-10, SIG: ASR 95 -> 9.9% with it), so it is left out (and
    unlearned, see ``relearn``) unless it rejoins. ``rejoin``: suspected samples the clean model does not
    relabel that the defense lets back in with their given label (``rejoin_mask``).
    """
    keep = ~suspected | (labels != data.labels)
    return (keep | rejoin if rejoin is not None else keep).nonzero().flatten()


def rejoin_mask(suspected: torch.Tensor, labels: torch.Tensor, given: torch.Tensor, scores: torch.Tensor,
                quantile: float) -> torch.Tensor:
    """bool N: suspected samples the clean model does not relabel (``labels == given``: it is unsure of them
    or confirms their label) whose warm-up consistency score (KL, ``scores``) is at least the
    ``quantile``-quantile of all scores. They rejoin relearning with their given label instead of being left
    out (unsure) or unlearned (confirmed).

    Why: most of them are clean samples of the enhanced model's sink classes, which clean training barely saw
    (quick CIFAR-10 TaCT: 584 of 710 unsure suspects are frogs), so leaving them out, or unlearning them, costs
    those classes' accuracy; but the poisons the clean model hesitates on or confirms are among them too
    (unsure: TaCT 88, physical 275; confirmed: SIG 402, TaCT 345). The paper's own premise separates them:
    poisons are robust, with low KL (AUROC 0.78-0.86 inside the unsure set). Measured for the confirmed ones
    (session 11, quick, seeds 0 and 1; benchmarks/results/quick_cifar10_grid.md): ACC up in 33 of 36 cells
    (up to +1.41 points; 0% end to end 76.12 -> 76.80, 75.04 -> 76.45), ASR within the spread of one
    fine-tuning (TaCT, where 3 poisons rejoin: 9.70 -> 12.90 at seed 0; 7.90 -> 7.50 at seed 1).
    ``quantile`` ≥ 1: none rejoin.
    """
    if quantile >= 1 or len(scores) == 0:
        return torch.zeros_like(suspected)
    return suspected & (labels == given) & (scores >= scores.float().quantile(quantile))


def relearn_masks(suspected: torch.Tensor, labels: torch.Tensor, confirmed: torch.Tensor, given: torch.Tensor,
                  scores: torch.Tensor, quantile: float, protected: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rejoin, unlearn), bool N each: the suspects that rejoin relearning with their given label
    (``rejoin_mask``) and the confirmed ones that are unlearned, both without the latent guard's subgroup
    (``protected``, guard.py). A protected suspect is relearned only when the clean model relabels it; otherwise
    it is left out. With ``trust_unguarded`` (settings.py) the caller passes only the protected suspects as
    ``suspected``: the others are then relearned like unsuspected samples, with their given label.

    Why: the guarded subgroup is where the poisons are (quick CIFAR-10, seed 0: 449 of Blend's 475 in it);
    the clean model cannot relabel a poison it is unsure of (a blended image), so letting the subgroup rejoin
    re-taught the trigger (session 18: Blend 135 poisons rejoined with the target label, clean model ASR
    0.68% -> 5.96% after relearning; TaCT 4.0% -> 19.7%), and unlearning it costs the target class accuracy
    when it is only a natural subgroup (0% poison: 76.30% left out, 75.75% unlearned).
    """
    rejoin = rejoin_mask(suspected, labels, given, scores, quantile) & ~protected
    return rejoin, confirmed & ~rejoin & ~protected


def relearn(model: torch.nn.Module, data: ImageData, labels: torch.Tensor, indices: torch.Tensor,
            recipe: TrainConfig, epochs: int, lr: float, unlearn: torch.Tensor | None = None,
            unlearn_weight: float = 0.0, checkpoint=None, progress: bool = False) -> None:
    """Fine-tune ``model`` in place on ``data[indices]`` with ``labels`` (Eq. 5), ``lr`` peak, no warm-up.

    ``unlearn`` (bool N) with ``unlearn_weight`` λ′ > 0: those samples are added with weight −λ′ (gradient
    ascent on their label), each one's loss clipped at ln C, the loss of a uniform prediction over the C
    classes, so ascent stops once the model no longer prefers that label to chance. The loss is then plain
    cross-entropy for every sample (no label smoothing), as in the enhancement rounds.
    """
    cfg = TrainConfig(**{**recipe.__dict__, "epochs": epochs, "lr": lr, "warmup": 0.0})
    weights = loss = None
    if unlearn is not None and unlearn_weight > 0 and bool(unlearn.any()):
        listed = torch.zeros(len(data), dtype=torch.bool)
        listed[indices] = True
        indices = torch.cat([indices, (unlearn & ~listed).nonzero().flatten()])
        weights = torch.where(unlearn, torch.tensor(-unlearn_weight), torch.tensor(1.0))
        dev_mask = unlearn.to(resolve_device(cfg.device))
        loss = bounded_unlearning_loss(dev_mask, math.log(data.num_classes))
    fit(model, data, cfg, labels=labels, indices=indices, weights=weights, loss=loss, checkpoint=checkpoint,
        progress="relearning" if progress else False)
