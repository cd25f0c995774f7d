"""Stage 1: perturbation-consistency score (paper Alg. 1, Eq. 3).

s_i = KL(p(x_i) ‖ p(x_i + m_i⊙δ_i)) with a random square patch mask m_i of side r and δ_i found by
patch-restricted PGD (‖δ‖∞ ≤ ε). Poisoned samples are robust (small s); clean ones sensitive (large s).
Fully batched on the model's device; no per-sample Python.
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ...train.loop import stderr_is_terminal

from ...adversarial import consistency_kl, frozen_eval, random_patch_masks
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
    out = []
    bar = tqdm(total=len(indices), desc=f"scoring ({stage})", disable=not progress or not stderr_is_terminal(),
               unit="img", leave=False)
    with frozen_eval(model):
        try:
            for start in range(0, len(indices), s.batch_size):
                idx = indices[start : start + s.batch_size]
                x = data.float_nchw(idx, dev).contiguous(memory_format=torch.channels_last)
                mask = random_patch_masks(len(idx), h, w, side, g, dev)
                kl = consistency_kl(model, x, mask, s.eps, s.pgd_steps, g, autocast_ctx=lambda: autocast(dev))
                out.append(kl.float().cpu())
                bar.update(len(idx))
        finally:
            bar.close()
    return torch.cat(out) if out else torch.empty(0)
