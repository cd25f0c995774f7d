"""Stage 3: identification with the backdoor-enhanced model.

The paper's rule: samples the enhanced model still classifies as their given label are poisoned,
misclassified ones clean. The continuous score is the margin ``logit[given] − max other logit`` (higher =
more suspicious); the verdict is ``margin > 0``.

Departure (measured): the enhanced model also still fits clean samples it memorised, and those are
flagged with the poisons (digits, BadNets: FPR 25.9% at recall 100%). A memorised clean sample loses
its label under a small adversarial perturbation; a poison keeps it, because the trigger (which the
enhancement strengthened) carries the prediction — the paper's own premise. So with ``identify_eps > 0``
the margin is taken on an ε-bounded PGD perturbation of each image that attacks its given label (same
digits run: ε = 8/255 → FPR 10.0%, ε = 16/255 → 5.7%, recall 100%). On CIFAR-10 quick it cost recall
(settings.py), so it is an option, off by default.
"""
from __future__ import annotations

import torch

from ...adversarial import frozen_eval, pgd_against_label
from ...seeding import generator
from ...train.infer import autocast, model_device, predict_logits
from ...types import ImageData


def _margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    own = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).max(1).values
    return own - other


def given_label_margin(model: torch.nn.Module, data: ImageData, batch_size: int = 1024) -> torch.Tensor:
    """float32 ``N``: logit of the given label minus the largest other logit."""
    return _margin(predict_logits(model, data, batch_size=batch_size), data.labels)


def adversarial_margin(model: torch.nn.Module, data: ImageData, eps: float, steps: int, seed: int,
                       batch_size: int = 512) -> torch.Tensor:
    """float32 ``N`` (CPU): the given-label margin on an ε-bounded L∞ PGD perturbation attacking that label."""
    dev = model_device(model)
    g = generator(seed, "advrbd-identify", device=dev)
    out = []
    with frozen_eval(model):
        for start in range(0, len(data), batch_size):
            idx = torch.arange(start, min(len(data), start + batch_size))
            x = data.float_nchw(idx, dev).contiguous(memory_format=torch.channels_last)
            y = data.labels[idx].to(dev)
            logits = pgd_against_label(model, x, y, eps, steps, g, autocast_ctx=lambda: autocast(dev))
            out.append(_margin(logits, y).cpu())
    return torch.cat(out) if out else torch.empty(0)


def identify(model: torch.nn.Module, data: ImageData, eps: float = 0.0, steps: int = 2,
             seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(suspected bool N, score float N, threshold 0). ``eps = 0``: the paper's rule on the clean images."""
    margin = adversarial_margin(model, data, eps, steps, seed) if eps > 0 else given_label_margin(model, data)
    return margin > 0, margin, 0.0
