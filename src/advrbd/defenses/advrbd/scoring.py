"""Stage 1: perturbation-consistency score (paper Alg. 1, Eq. 3).

s_i = KL(p(x_i) ‖ p(x_i + m_i⊙δ_i)) with a random square patch mask m_i of side r and δ_i found by
patch-restricted PGD (‖δ‖∞ ≤ ε). Poisoned samples are robust (small s); clean ones sensitive (large s).
Fully batched on the model's device; no per-sample Python.
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ... import dist
from ...adversarial import consistency_kl, frozen_eval, random_patch_masks
from ...adversarial.pgd import skip_pgd_start
from ...seeding import generator
from ...train.infer import autocast, model_device
from ...types import ImageData
from .settings import AdvrBDSettings


def consistency_scores(
    model: torch.nn.Module,
    data: ImageData,
    indices: torch.Tensor,
    s: AdvrBDSettings,
    stage: str,
    progress: bool = False,
) -> torch.Tensor:
    """KL scores (float32, CPU) for the samples at ``indices`` of ``data``, in that order."""
    dev = model_device(model)
    c, h, w = data.shape
    side = max(1, round(s.patch_frac * min(h, w)))
    g = generator(s.seed, "advrbd-score", stage, device=dev)
    bar = tqdm(total=len(indices), desc=f"scoring ({stage})", disable=not progress, unit="img", leave=False)

    def one(start: int, stop: int) -> torch.Tensor:
        idx = indices[start:stop]
        x = data.float_nchw(idx, dev).contiguous(memory_format=torch.channels_last)
        mask = random_patch_masks(len(idx), h, w, side, g, dev)
        kl = consistency_kl(model, x, mask, s.eps, s.pgd_steps, g, autocast_ctx=lambda: autocast(dev))
        bar.update(len(idx))
        return kl.float().cpu()

    def skip(start: int, stop: int) -> None:  # another rank's batch: draw its random numbers all the same
        random_patch_masks(stop - start, h, w, side, g, dev)
        skip_pgd_start(g, (stop - start, c, h, w), dev)

    with frozen_eval(model):
        try:
            out = dist.map_batches(len(indices), s.batch_size, one, skip)  # under torchrun: shared by ranks
        finally:
            bar.close()
    return torch.cat(out) if out else torch.empty(0)


def move_most_sensitive(scores: torch.Tensor, pool_r: torch.Tensor, k: int,
                        quota: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``pool_r`` (indices, scores aligned) into (k most sensitive = largest KL, the rest).

    With ``quota`` (int64 ``C``) and ``labels`` (given labels of the whole set): the ``quota[c]`` most
    sensitive samples of each given class c move instead of the k most sensitive overall (``k`` unused).
    """
    order = torch.argsort(scores, descending=True, stable=True)
    take = torch.zeros(len(pool_r), dtype=torch.bool)
    if quota is None:
        take[order[: max(0, min(k, len(pool_r)))]] = True
    else:
        y = labels[pool_r[order]]
        # rank of each sample among the pool's samples of its class, in descending score order: a stable
        # sort by class keeps the score order inside each class
        by_class = torch.argsort(y, stable=True)
        counts = torch.bincount(y, minlength=len(quota))
        rank = torch.empty_like(y)
        rank[by_class] = torch.arange(len(y)) - (counts.cumsum(0) - counts)[y[by_class]]
        take[order[rank < quota[y]]] = True
    moved = pool_r[order][take[order]]  # in descending score order
    return moved, pool_r[~take]
