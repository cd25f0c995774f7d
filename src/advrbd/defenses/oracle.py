"""Oracle filter (reference row, evaluation only): drop the true poisoned samples and train from scratch on
the rest with the standard recipe. It shows the best a filtering defense can reach on the same budget.

This is the only defense given ground truth: it declares ``requires_ground_truth = True`` and the pipeline
passes the true poison mask as ``ctx.extra["poison_mask"]`` (bool ``N``, True = poisoned). Cover samples
(trigger variants that keep their label) are kept, as they are not poison.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..errors import BadInputError
from ..train.loop import fit
from ..types import DefenseResult
from ._common import stage_checkpoint
from .base import DEFENSES, Defense, DefenseContext


@DEFENSES.register("oracle", "reference row: drop the true poisons, train from scratch (needs ground truth)")
@dataclass
class Oracle(Defense):
    """Train from scratch on the samples that are truly not poisoned."""

    name = "oracle"
    flags_samples = True
    requires_ground_truth: ClassVar[bool] = True

    def run(self, ctx: DefenseContext) -> DefenseResult:
        mask = ctx.extra.get("poison_mask")
        if mask is None:
            raise BadInputError(
                "the oracle defense needs the true poison mask in ctx.extra['poison_mask'] (evaluation only; "
                "it is given by `advrbd bench`/`evaluate` when ground truth is known)"
            )
        mask = torch.as_tensor(mask, dtype=torch.bool).cpu()
        if mask.shape != (len(ctx.train),):
            raise BadInputError(f"poison_mask must have shape ({len(ctx.train)},); got {tuple(mask.shape)}")
        t0 = time.perf_counter()
        model = ctx.new_model()
        res = fit(model, ctx.train, ctx.recipe, indices=(~mask).nonzero().flatten(),
                  checkpoint=stage_checkpoint(ctx, self, "train"),
                  progress="oracle training" if ctx.progress else False)
        info = {"n_dropped": int(mask.sum()), "train_seconds": res.seconds, "seconds": time.perf_counter() - t0}
        return DefenseResult(model=model, scores=mask.float(), suspected=mask.clone(), info=info)
