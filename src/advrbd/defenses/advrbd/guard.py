"""Latent guard of the surely-clean pool (a departure from the paper; ``latent_guard`` in settings.py).

The enhancement rounds unlearn the samples with the largest consistency score (KL). Where the score does
not separate a trigger's poisons (quick CIFAR-10: Blend AUROC 0.52, WaNet 0.28; the poisons are not more
robust than clean samples in a weakly trained model), a third of them land in the unlearned pool, the
rounds unlearn the backdoor, and identification finds nothing. The guard keeps the samples that form an
unexplained subgroup of their given class out of that pool.

Statistic: SCAn's two-subgroup test (Tang et al., 2021; ``defenses/scan.py``) on the warm-up model's
penultimate features, without SCAn's clean reserve: the global identity/variation model of class k is
estimated from the *other* classes (leave one class out), which are clean for an attack with one target
class, so the target class's mixture of poisons and clean samples is not absorbed into the shared variation.
J_k is normalised across classes (J*_k = (J_k − median) / (1.4826·MAD)). The smaller subgroup of the class
with the largest J* is protected, and that of any other class whose J* exceeds SCAn's threshold e².
No threshold depends on the poison rate, and protecting a clean subgroup only means it is not unlearned:
identification and everything after it are unchanged.

Measured post hoc on the saved warm-up models of the quick grid (seed 0, 5%, target 1): class 1 has the
largest J* for all eight attacks and for clean data (J* 1.9–17.5, next class ≤ 2.5); its smaller subgroup
holds 449 of 475 poisons for Blend (454 samples), 415 for WaNet (519), 421 BadNets (421), 463 SIG (463),
475 TaCT (499), 475 PhysicalBA (477), 448 Adaptive-Patch (461), 31 Adaptive-Blend (682, whose design
defeats latent separation). 9 s on 9,500 images.
"""
from __future__ import annotations

import math

import torch

from ...seeding import generator
from ...types import ImageData
from .._common import features
from ..scan import class_statistic, global_model, normalised_statistic, split_class

EM_ITERS = 100  # as SCAn's authors' code


def latent_guard(model: torch.nn.Module, data: ImageData, seed: int = 0,
                 threshold: float = math.exp(2)) -> tuple[torch.Tensor, torch.Tensor]:
    """(protected bool N, J* float C). ``protected``: the smaller two-subgroup split of the class with the
    largest leave-one-class-out J*, and of every class with J* > ``threshold``."""
    n, k = len(data), data.num_classes
    y = data.labels.cpu()
    counts = torch.bincount(y, minlength=k)
    protected = torch.zeros(n, dtype=torch.bool)
    if n == 0 or int((counts >= 2).sum()) < 3:  # J* needs a median over classes
        return protected, torch.zeros(k)
    x = features(model, data).double()
    x = x - x.mean(0)
    g = generator(seed, "advrbd-guard")
    stat = torch.zeros(k, dtype=torch.float64)
    smaller = {}
    for c in range(k):
        idx = (y == c).nonzero().flatten()
        if idx.numel() < 2:
            continue
        others = y != c
        y_o = y[others]
        su, se = global_model(x[others], torch.where(y_o > c, y_o - 1, y_o), k - 1, EM_ITERS)
        f = torch.linalg.pinv(se)
        sub = split_class(x[idx], f, g, EM_ITERS)
        stat[c] = class_statistic(x[idx], su, se, f, sub)
        smaller[c] = idx[sub if int(sub.sum()) < int((~sub).sum()) else ~sub]
    j_star = normalised_statistic(stat).float()
    for c in set([int(j_star.argmax())] + (j_star > threshold).nonzero().flatten().tolist()):
        if c in smaller:
            protected[smaller[c]] = True
    return protected, j_star
