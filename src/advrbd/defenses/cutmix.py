"""CutMix training as a backdoor defense (Yun et al., 2019, "CutMix: Regularization Strategy to Train Strong
Classifiers with Localizable Features", ICCV; used against poisoning by Borgnia et al., 2021, "Strong Data
Augmentation Sanitizes Poisoning and Backdoor Attacks Without an Accuracy Tradeoff", ICASSP).

Train a fresh model from scratch on the untrusted set with CutMix: for a batch chosen with probability
``prob``, draw λ ~ Beta(β, β), paste a box covering a (1 − λ) share of the image from a shuffled partner of
the same batch, and train on ``λ·CE(y) + (1 − λ)·CE(y_partner)`` with λ corrected to the exact box area.
No clean data. The mixing runs inside :func:`advrbd.train.loop.fit` through its ``mix`` hook, after the
recipe's crop/flip augmentation.

Values: Yun et al.'s CIFAR setting (their official code, ``--beta 1.0 --cutmix_prob 0.5``); the AdvrBD
paper's values were lost in extraction. The epoch count is the profile's standard recipe.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..train.loop import Mix, fit
from ..types import DefenseResult
from ._common import check_range, scaled_epochs, stage_checkpoint
from .base import DEFENSES, Defense, DefenseContext


def cutmix(prob: float, beta: float) -> Mix:
    """A ``fit`` mix hook doing CutMix on a random ``prob`` share of batches (Yun et al., 2019, Algorithm A1)."""

    def mix(x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n, _, h, w = x.shape
        one = torch.ones((), device=x.device)
        draws = torch.rand(4, generator=g, device=x.device).tolist()  # apply?, box centre y, x, seed for λ
        if beta <= 0 or draws[0] >= prob or n < 2:
            return x, y, one
        # torch has no seeded Beta sampler; a numpy generator seeded from the fit generator keeps it reproducible
        lam = float(np.random.default_rng(int(draws[3] * 2**31)).beta(beta, beta))
        cut = np.sqrt(1.0 - lam)
        ch, cw = int(h * cut), int(w * cut)
        cy, cx = int(draws[1] * h), int(draws[2] * w)
        y1, y2 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x1, x2 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        if y2 <= y1 or x2 <= x1:
            return x, y, one
        perm = torch.randperm(n, generator=g, device=x.device)
        out = x.clone()
        out[:, :, y1:y2, x1:x2] = x[perm, :, y1:y2, x1:x2]
        lam_box = 1.0 - (y2 - y1) * (x2 - x1) / (h * w)
        return out, y[perm], torch.full((), lam_box, device=x.device)

    return mix


@DEFENSES.register("cutmix", "train from scratch with CutMix augmentation (Yun et al., 2019; Borgnia et al., 2021)")
@dataclass
class CutMix(Defense):
    """Standard training from scratch with CutMix on every batch chosen with probability ``prob``."""

    name = "cutmix"

    # Yun et al. (2019) CIFAR experiments: cutmix_prob 0.5.
    prob: float = field(default=0.5, metadata={"doc": "probability that a batch is CutMix-ed, in [0, 1]"})
    # Yun et al. (2019): β = 1, i.e. λ uniform in (0, 1).
    beta: float = field(default=1.0, metadata={"doc": "β of the Beta(β, β) distribution of the kept area λ (> 0)"})
    # Same length as a standard training so ACC/ASR compare with the "none" row.
    epochs_factor: float = field(default=1.0, metadata={"doc": "training epochs = factor × the recipe's epochs"})

    def __post_init__(self) -> None:
        check_range("prob", self.prob, 0, 1)
        check_range("beta", self.beta, 0, 1e3, lo_open=True)
        check_range("epochs_factor", self.epochs_factor, 0, 100, lo_open=True)

    def run(self, ctx: DefenseContext) -> DefenseResult:
        t0 = time.perf_counter()
        model = ctx.new_model()
        cfg = ctx.recipe_with(epochs=scaled_epochs(self.epochs_factor, ctx.recipe.epochs))
        res = fit(model, ctx.train, cfg, mix=cutmix(self.prob, self.beta),
                  checkpoint=stage_checkpoint(ctx, self, "train"),
                  progress="CutMix training" if ctx.progress else False)
        info = {"epochs": cfg.epochs, "train_seconds": res.seconds, "seconds": time.perf_counter() - t0}
        return DefenseResult(model=model, info=info)
