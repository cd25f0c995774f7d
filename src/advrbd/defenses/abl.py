"""Anti-Backdoor Learning, ABL (Li, Lyu, Koren, Lyu, Li and Ma, 2021, "Anti-Backdoor Learning: Training
Clean Models on Poisoned Data", NeurIPS).

1. Isolation: train a fresh model with the local gradient ascent (LGA) loss sign(L − γ)·L, where L is the
   batch's mean cross-entropy (loss flooding at γ): the model cannot push its average loss below γ, while
   backdoor samples, learned much faster, still reach a loss well below it.
2. Isolate the ``isolation_ratio`` share of samples with the lowest loss (eval mode, no augmentation) as
   suspected poison.
3. Keep training the same model on the other samples (standard loss).
4. Unlearn the isolated samples by gradient ascent (negative weights in ``fit``) at a small learning rate.

Values (AdvrBD paper's were lost in extraction): γ = 0.5 and isolation ratio 0.01 are the ABL paper's CIFAR-10
defaults; the stage split 20/60/20 of a 100-epoch budget, unlearning lr 5e-4 and batch 256 are BackdoorBench's
``config/defense/abl/cifar10.yaml`` (tuning_epochs 20, finetuning_epochs 60, unlearning_epochs 20,
lr_unlearning_init 5e-4). Isolation and training stages scale with the recipe (0.2 and 0.6 of its epochs);
the unlearning epochs do not, because its effect depends on the number of ascent steps on the isolated 1%,
whose cost is negligible. Unlearning uses no augmentation, as in ABL's code; unlike it, BatchNorm running
statistics are frozen while unlearning, so that a small isolated set cannot overwrite them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..train.loop import LossFn, fit
from ..types import DefenseResult
from ._common import (check_range, fraction_count, frozen_bn_stats, per_sample_loss, scaled_epochs,
                      stage_checkpoint)
from .base import DEFENSES, Defense, DefenseContext


def lga_loss(gamma: float) -> LossFn:
    """Per-sample form of ABL's batch-level LGA: the batch mean of the result is sign(L̄ − γ)·L̄."""

    def loss(logits: torch.Tensor, targets: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        per = F.cross_entropy(logits, targets, reduction="none")
        return per * torch.sign(per.mean().detach() - gamma)

    return loss


@DEFENSES.register("abl",
                   "anti-backdoor learning: isolate lowest-loss samples under LGA, unlearn them (Li et al., 2021)")
@dataclass
class ABL(Defense):
    """Isolate the lowest-loss samples under loss flooding, train on the rest, unlearn the isolated ones."""

    name = "abl"
    flags_samples = True

    # Li et al. (2021): γ = 0.5 on CIFAR-10.
    gamma: float = field(default=0.5, metadata={"doc": "LGA flooding level γ of the mean cross-entropy (> 0)"})
    # Li et al. (2021): isolate 1% of the training set (a fixed rate, not the attack's).
    isolation_ratio: float = field(default=0.01, metadata={"doc": "share of lowest-loss samples isolated, in (0, 1)"})
    # BackdoorBench abl: 20 of 100 epochs of isolation, 60 of training on the rest.
    isolation_factor: float = field(default=0.2, metadata={"doc": "isolation epochs = factor × the recipe's epochs"})
    train_factor: float = field(default=0.6, metadata={
        "doc": "epochs of training on the non-isolated samples = factor × the recipe's epochs (0 = skip)"})
    # BackdoorBench abl: unlearning_epochs 20, lr_unlearning_init 5e-4, batch_size 256.
    unlearn_epochs: int = field(default=20, metadata={"doc": "epochs of gradient ascent on the isolated samples"})
    unlearn_lr: float = field(default=5e-4, metadata={"doc": "constant SGD learning rate of the unlearning"})
    unlearn_batch_size: int = field(default=256, metadata={"doc": "images per unlearning step"})

    def __post_init__(self) -> None:
        check_range("gamma", self.gamma, 0, 100, lo_open=True)
        check_range("isolation_ratio", self.isolation_ratio, 0, 1, lo_open=True, hi_open=True)
        check_range("isolation_factor", self.isolation_factor, 0, 100, lo_open=True)
        check_range("train_factor", self.train_factor, 0, 100)
        check_range("unlearn_epochs", self.unlearn_epochs, 0, 100_000)
        check_range("unlearn_lr", self.unlearn_lr, 0, 10, lo_open=True)
        check_range("unlearn_batch_size", self.unlearn_batch_size, 1, 1 << 20)

    def isolate(self, ctx: DefenseContext, model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """Stages 1–2 on ``model`` (trained in place): ``(loss N, isolated positions)``."""
        cfg = ctx.recipe_with(epochs=scaled_epochs(self.isolation_factor, ctx.recipe.epochs))
        fit(model, ctx.train, cfg, loss=lga_loss(self.gamma), checkpoint=stage_checkpoint(ctx, self, "isolation"),
            progress="ABL: isolation (LGA)" if ctx.progress else False)
        loss = per_sample_loss(model, ctx.train, precision=ctx.recipe.precision)
        return loss, loss.argsort()[: fraction_count(self.isolation_ratio, len(loss))]

    def run(self, ctx: DefenseContext) -> DefenseResult:
        t0 = time.perf_counter()
        n = len(ctx.train)
        model = ctx.new_model()
        loss, isolated = self.isolate(ctx, model)
        t_iso = time.perf_counter() - t0
        suspected = torch.zeros(n, dtype=torch.bool)
        suspected[isolated] = True
        if self.train_factor > 0:
            cfg = ctx.recipe_with(epochs=scaled_epochs(self.train_factor, ctx.recipe.epochs))
            fit(model, ctx.train, cfg, indices=(~suspected).nonzero().flatten(),
                checkpoint=stage_checkpoint(ctx, self, "train"), progress="ABL: training" if ctx.progress else False)
        t_train = time.perf_counter() - t0 - t_iso
        if self.unlearn_epochs > 0:
            cfg = ctx.recipe_with(epochs=self.unlearn_epochs, lr=self.unlearn_lr, batch_size=self.unlearn_batch_size,
                                  schedule="constant", warmup=0.0, crop_padding=0, flip=False, physical=False)
            with frozen_bn_stats(model):
                fit(model, ctx.train, cfg, indices=isolated, weights=-torch.ones(n),
                    progress="ABL: unlearning" if ctx.progress else False)
        info = {"n_isolated": len(isolated), "isolation_seconds": t_iso, "train_seconds": t_train,
                "unlearn_seconds": time.perf_counter() - t0 - t_iso - t_train, "seconds": time.perf_counter() - t0}
        threshold = -float(loss[isolated].max()) if len(isolated) else None
        return DefenseResult(model=model, scores=-loss, suspected=suspected, threshold=threshold, info=info)
