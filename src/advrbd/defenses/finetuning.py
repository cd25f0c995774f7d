"""FineTuning baseline (Liu, Dolan-Gavitt and Garg, 2018, "Fine-Pruning: Defending Against Backdooring
Attacks on Deep Neural Networks", RAID; fine-tuning alone is their first baseline).

Take the backdoored model (standard training on the untrusted set) and fine-tune all layers on the reserved
clean set with a small learning rate. Uses the clean reserve (AdvrBD paper, Section VI-A: "We use reserved
clean samples to finetune the full layer of the model"; 5% of the training set by convention, SPEC §5).

The AdvrBD paper's repair learning rate and epoch count were lost in extraction, so the values are
BackdoorBench's ``config/defense/ft/cifar10.yaml``: SGD lr 0.01, momentum 0.9, weight decay 5e-4, batch 256,
cosine schedule, as many epochs over the reserve as the attack's training ran (100 there).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..errors import BadInputError
from ..train.infer import accuracy
from ..train.loop import TrainConfig, fit
from ..types import DefenseResult
from ._common import check_range, clone_model, scaled_epochs, stage_checkpoint
from .base import DEFENSES, Defense, DefenseContext


def reserve_recipe(ctx: DefenseContext, epochs_factor: float, lr: float, batch_size: int) -> TrainConfig:
    """Recipe of a fine-tuning run on the clean reserve (shared with fine-pruning).

    Cosine from ``lr`` down to 0 with no warm-up, as BackdoorBench's ``CosineAnnealingLR``; augmentation
    (crop, flip) as in the profile's recipe.
    """
    return ctx.recipe_with(epochs=scaled_epochs(epochs_factor, ctx.recipe.epochs), lr=lr, batch_size=batch_size,
                           schedule="cosine", warmup=0.0, label_smoothing=0.0, physical=False)


def need_reserve(ctx: DefenseContext, who: str):
    if ctx.clean_reserve is None or len(ctx.clean_reserve) == 0:
        raise BadInputError(f"{who} needs a clean reserve (ctx.clean_reserve); none was given")
    return ctx.clean_reserve


@DEFENSES.register("finetuning", "fine-tune the backdoored model on the clean reserve (Liu et al., 2018)")
@dataclass
class FineTuning(Defense):
    """Fine-tune every layer of the backdoored model on the clean reserve."""

    name = "finetuning"
    requires_clean_reserve = True

    # BackdoorBench ft: 100 fine-tuning epochs after a 100-epoch attack training, i.e. factor 1.
    epochs_factor: float = field(default=1.0, metadata={
        "doc": "fine-tuning epochs over the reserve = factor × the recipe's epochs (BackdoorBench: 1)"})
    # BackdoorBench ft/cifar10.yaml: lr 0.01 (a tenth of the usual from-scratch CIFAR lr).
    lr: float = field(default=0.01, metadata={"doc": "peak SGD learning rate of the fine-tuning (cosine to 0)"})
    # BackdoorBench ft/cifar10.yaml: batch_size 256 (the lr above is tied to it).
    batch_size: int = field(default=256, metadata={"doc": "images per fine-tuning step"})

    def __post_init__(self) -> None:
        check_range("epochs_factor", self.epochs_factor, 0, 100, lo_open=True)
        check_range("lr", self.lr, 0, 10, lo_open=True)
        check_range("batch_size", self.batch_size, 1, 1 << 20)

    def run(self, ctx: DefenseContext) -> DefenseResult:
        reserve = need_reserve(ctx, "finetuning")
        t0 = time.perf_counter()
        model = clone_model(ctx.backdoored_model())
        acc_before = accuracy(model, reserve)
        cfg = reserve_recipe(ctx, self.epochs_factor, self.lr, self.batch_size)
        res = fit(model, reserve, cfg, checkpoint=stage_checkpoint(ctx, self, "finetune"),
                  progress="fine-tuning" if ctx.progress else False)
        info = {"reserve_size": len(reserve), "epochs": cfg.epochs, "reserve_acc_before": acc_before,
                "reserve_acc_after": accuracy(model, reserve), "finetune_seconds": res.seconds,
                "seconds": time.perf_counter() - t0}
        return DefenseResult(model=model, info=info)
