"""Latent guard and the evidence of a backdoor (a departure from the paper).

Split: SCAn's two-subgroup test (Tang et al., 2021; ``defenses/scan.py``) on the warm-up model's penultimate
features, without SCAn's clean reserve: the identity/variation model of class c is estimated from the *other*
classes (leave one class out), so the target class's mixture of poisons and clean samples is not absorbed
into the shared variation. Every class gets a split into two subgroups and a statistic J_c, normalised across
classes (J*_c = (J_c − median) / (1.4826·MAD)).

Evidence (``evidence_classes``): an all-to-one backdoor gives its target class a subgroup that no other class
has, so a class is taken to carry a backdoor only when its J* is large (``MIN_J`` robust standard deviations
above the median class) *and* stands apart from every other class (at least ``APART`` times the next J*).
An all-to-one backdoor has one target, so at most one class is taken. Natural structure does not: CIFAR-10's
automobiles are the most anomalous class without poison (J* 1.9 against 1.4), and GTSRB has six clean
classes at J* 9–15; choosing the largest J* whatever its size made the defense guard a clean class and raise
a blended trigger's ASR (benchmarks/results/DECISIONS.md). No threshold depends on the poison rate.

With evidence, the smaller subgroup of each evidence class is protected from unlearning during enhancement
and is the verdict; the samples of an evidence class that the enhanced models keep go to the review band.
Without evidence nothing is flagged and the defense returns the standard model unchanged: a defense that
cannot find poisons must not drop clean samples and hand the backdoor a larger share of the data.
"""
from __future__ import annotations

import torch

from ...seeding import generator
from ...types import ImageData
from .._common import features
from ..scan import class_statistic, global_model, normalised_statistic, split_class

EM_ITERS = 100  # as SCAn's authors' code
MIN_J = 3.0  # J* is a robust z-score over classes
APART = 2.0  # an evidence class's J* is at least this multiple of every other class's


def latent_splits(model: torch.nn.Module, data: ImageData, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(J* float C, in_smaller bool N): every class's normalised two-subgroup statistic, and whether each
    sample is in the smaller subgroup of its class. Needs three classes with two samples or more (J* is a
    robust z-score over classes); otherwise J* is all zero and no sample is in a subgroup."""
    n, k = len(data), data.num_classes
    y = data.labels.cpu()
    counts = torch.bincount(y, minlength=k)
    in_smaller = torch.zeros(n, dtype=torch.bool)
    if n == 0 or int((counts >= 2).sum()) < 3:
        return torch.zeros(k), in_smaller
    x = features(model, data).double()
    x = x - x.mean(0)
    g = generator(seed, "advrbd-guard")
    stat = torch.zeros(k, dtype=torch.float64)
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
        in_smaller[idx[sub if int(sub.sum()) < int((~sub).sum()) else ~sub]] = True
    return normalised_statistic(stat).float(), in_smaller


def evidence_classes(j_star: torch.Tensor) -> list[int]:
    """The class whose latent split is evidence of a backdoor, if any: the largest J*, when it is above
    ``MIN_J`` and at least ``APART`` times every other class's J* (an all-to-one backdoor has one target)."""
    if j_star.numel() < 2:
        return []
    top = torch.topk(j_star, 2)
    best, second = float(top.values[0]), max(float(top.values[1]), 0.0)
    return [int(top.indices[0])] if best > MIN_J and best >= APART * second else []


def verdict(classes: list[int], in_smaller: torch.Tensor, labels: torch.Tensor,
            margin: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(suspected, review), bool N each. suspected: the smaller subgroup of every evidence class; review: the
    other samples of an evidence class the enhanced models keep (``margin`` > 0; possible missed poisons)."""
    in_e = torch.isin(labels, torch.tensor(classes, dtype=torch.long))
    suspected = in_smaller & in_e
    kept = margin > 0 if margin is not None else torch.zeros_like(suspected)
    return suspected, kept & in_e & ~suspected


def evidence_record(j_star: torch.Tensor, in_smaller: torch.Tensor, labels: torch.Tensor,
                    classes: list[int]) -> list[dict]:
    """Per class: J*, the size of its smaller subgroup, and whether it is an evidence class (summary.json)."""
    return [{"class": c, "j_star": round(float(j_star[c]), 3),
             "n_subgroup": int((in_smaller & (labels == c)).sum()), "backdoor": c in classes}
            for c in range(len(j_star))]
