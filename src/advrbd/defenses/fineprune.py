"""Fine-Pruning (Liu, Dolan-Gavitt and Garg, 2018, "Fine-Pruning: Defending Against Backdooring Attacks on
Deep Neural Networks", RAID).

1. On the clean reserve, measure the mean activation of every channel of the last convolutional feature map
   (the map that global pooling turns into ``model.features(x)``). Backdoor neurons are dormant on clean data.
2. Prune channels in increasing order of mean activation until the reserve accuracy has dropped by more than
   ``max_acc_drop`` points (Liu et al. stop at a 4% drop) or ``max_ratio`` of the channels are gone; the last
   pruning that stayed within the budget is kept.
3. Fine-tune the pruned model on the reserve (same settings as the ``finetuning`` baseline).

Pruning by masking: every model in ``advrbd.models`` ends its body with a per-channel global pool, so removing
channel c of the last feature map is exactly removing feature c, i.e. zeroing column c of ``model.head``.
That is persistent in ``state_dict`` (no hooks needed when the model is saved and reloaded) and works for
any :class:`~advrbd.models.Classifier`; a gradient mask keeps the columns at zero while fine-tuning. Mean
activation is measured on the pooled feature (the spatial mean for average-pooled models, as in the paper;
the spatial maximum for ``fastnet``, which pools by max).

Values: the AdvrBD paper's pruned fraction ("of the second layer") was lost in extraction; the stopping
rule is Liu et al.'s 4-point accuracy drop, the fine-tuning is BackdoorBench's ``fp``/``ft`` recipe.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from ..models.adapter import last_linear
from ..train.loop import fit
from ..types import DefenseResult
from ._common import check_range, clone_model, features, require_classifier, stage_checkpoint
from .base import DEFENSES, Defense, DefenseContext
from .finetuning import need_reserve, reserve_recipe


def prune_order(model: torch.nn.Module, reserve, precision: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Channels in increasing order of mean activation on ``reserve``, and the reserve features ``N×D``."""
    feats = features(model, reserve, precision=precision)
    return feats.mean(0).argsort(), feats


def reserve_accuracy(model: torch.nn.Module, feats: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor) -> float:
    """Reserve accuracy (percent) with only the channels where ``keep`` is True, computed from cached features."""
    head = last_linear(model)
    w = head.weight.detach().float().cpu() * keep[None, :].float()
    b = head.bias.detach().float().cpu() if head.bias is not None else 0.0
    return 100.0 * ((feats @ w.T + b).argmax(1) == labels).float().mean().item()


@DEFENSES.register("fineprune",
                   "prune dormant last-layer channels on the clean reserve, then fine-tune (Liu et al., 2018)")
@dataclass
class FinePruning(Defense):
    """Prune the channels least active on clean data, then fine-tune on the clean reserve."""

    name = "fineprune"
    requires_clean_reserve = True

    # Liu et al. (2018), Section 4: pruning stops when validation accuracy has dropped by 4%.
    max_acc_drop: float = field(default=4.0, metadata={
        "doc": "stop pruning before the reserve accuracy drops by more than this many percentage points"})
    # Upper bound on the fraction pruned; keeps at least 10% of the channels whatever the accuracy does
    # (Liu et al. report pruning most but not all of the last layer).
    max_ratio: float = field(default=0.9, metadata={"doc": "largest fraction of channels pruned, in [0, 1)"})
    # Fine-tuning after pruning: as the finetuning baseline (BackdoorBench ft/fp: lr 0.01, batch 256, cosine).
    epochs_factor: float = field(default=1.0, metadata={
        "doc": "fine-tuning epochs over the reserve = factor × the recipe's epochs (0 = prune only)"})
    lr: float = field(default=0.01, metadata={"doc": "peak SGD learning rate of the fine-tuning (cosine to 0)"})
    batch_size: int = field(default=256, metadata={"doc": "images per fine-tuning step"})

    def __post_init__(self) -> None:
        check_range("max_acc_drop", self.max_acc_drop, 0, 100)
        check_range("max_ratio", self.max_ratio, 0, 1, hi_open=True)
        check_range("epochs_factor", self.epochs_factor, 0, 100)
        check_range("lr", self.lr, 0, 10, lo_open=True)
        check_range("batch_size", self.batch_size, 1, 1 << 20)

    def run(self, ctx: DefenseContext) -> DefenseResult:
        reserve = need_reserve(ctx, "fineprune")
        t0 = time.perf_counter()
        model = clone_model(ctx.backdoored_model())
        require_classifier(model, "fineprune")
        order, feats = prune_order(model, reserve, ctx.recipe.precision)
        d = feats.shape[1]
        keep = torch.ones(d, dtype=torch.bool)
        base_acc = reserve_accuracy(model, feats, reserve.labels, keep)
        n_pruned, history = 0, []
        for c in order[: int(self.max_ratio * d)].tolist():
            trial = keep.clone()
            trial[c] = False
            acc = reserve_accuracy(model, feats, reserve.labels, trial)
            if base_acc - acc > self.max_acc_drop:
                break
            keep, n_pruned = trial, n_pruned + 1
            history.append({"pruned": n_pruned, "channel": c, "reserve_acc": acc})
        pruned_acc = reserve_accuracy(model, feats, reserve.labels, keep)
        head = last_linear(model)
        mask = keep.to(head.weight.device, head.weight.dtype)
        with torch.no_grad():
            head.weight.mul_(mask[None, :])
        seconds_prune = time.perf_counter() - t0
        ft_seconds = 0.0
        if self.epochs_factor > 0:
            # zero gradient on pruned columns: with zero weights, SGD's weight decay and momentum keep them at 0
            handle = head.weight.register_hook(lambda g: g * mask[None, :].to(g.device, g.dtype))
            try:
                cfg = reserve_recipe(ctx, self.epochs_factor, self.lr, self.batch_size)
                ft_seconds = fit(model, reserve, cfg, checkpoint=stage_checkpoint(ctx, self, "finetune"),
                                 progress="fine-pruning: fine-tune" if ctx.progress else False).seconds
            finally:
                handle.remove()
        info = {"channels": d, "pruned": n_pruned, "pruned_fraction": n_pruned / max(1, d),
                "pruned_channels": (~keep).nonzero().flatten().tolist(), "reserve_acc_before": base_acc,
                "reserve_acc_pruned": pruned_acc, "prune_seconds": seconds_prune, "finetune_seconds": ft_seconds,
                "seconds": time.perf_counter() - t0}
        return DefenseResult(model=model, history=tuple(history), info=info)
