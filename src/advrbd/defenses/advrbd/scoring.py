"""Stage 1: perturbation-consistency score (paper Alg. 1, Eq. 3).

s_i = KL(p(x_i) ‖ p(x_i + m_i⊙δ_i)) with a random square patch mask m_i of side r and δ_i found by
patch-restricted PGD (‖δ‖∞ ≤ ε). Poisoned samples are robust (small s); clean ones sensitive (large s).
Fully batched on the model's device; no per-sample Python.
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ... import dist
from ...train.loop import stderr_is_terminal
from ...adversarial import consistency_kl, frozen_eval, random_patch_masks
from ...adversarial.pgd import skip_pgd_start
from ...seeding import generator
from ...train.infer import autocast, model_device
from ...types import ImageData
from .settings import ScoreSettings


def consistency_scores(
    model: torch.nn.Module,
    data: ImageData,
    indices: torch.Tensor,
    s: ScoreSettings,
    seed: int,
    stage: str,
    progress: bool = False,
) -> torch.Tensor:
    """KL scores (float32, CPU) for the samples at ``indices`` of ``data``, in that order."""
    dev = model_device(model)
    c, h, w = data.shape
    side = max(1, round(s.patch_frac * min(h, w)))
    g = generator(seed, "advrbd-score", stage, device=dev)
    bar = tqdm(total=len(indices), desc=f"scoring ({stage})", disable=not progress or not stderr_is_terminal(), unit="img", leave=False)

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
