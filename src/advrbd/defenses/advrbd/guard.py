"""Latent guard and the evidence of a backdoor (a departure from the paper).

Split: SCAn's two-subgroup test (Tang et al., 2021; ``defenses/scan.py``) on the warm-up model's penultimate
features, without SCAn's clean reserve: the identity/variation model of class c is estimated from the *other*
classes (leave one class out), so the target class's mixture of poisons and clean samples is not absorbed
into the shared variation. Every class gets a split into two subgroups and a statistic J_c, normalised across
classes (J*_c = (J_c − median) / (1.4826·MAD)).

Evidence (``evidence_classes``): the split isolates a trigger's poisons well even where J* does not single
them out (quick CIFAR-10, target 5: BadNets 403 of 403, Blend 428 of 452 in the smaller subgroup at J* 2.6
and 0.95, while automobiles reach J* 2.4 without poison). So a class is taken to carry a backdoor when its
smaller subgroup shows either sign of one:

- *spread* — the warm-up model's second choice for the subgroup's samples (their given label excluded) is
  distributed like the other classes' sizes, as a dirty-label attacker's source images are: a chi-square
  goodness-of-fit p-value of at least ``MIN_SPREAD_P``. A natural subgroup's second choices crowd onto its
  confusable neighbours (p ≤ 1e-12 in every clean class measured; poisons 0.009–0.08). Only subgroups of
  at least ``MIN_PER_CLASS`` samples per other class are tested: smaller ones cannot reject a natural mode;
- *apart* — its J* is large (``MIN_J``) and at least ``APART`` times every other class's (a trigger the
  features isolate strongly; this covers clean-label and single-source poisons, whose sources are not spread).

An all-to-one backdoor has one target, so at most one class is taken (the one with the strongest sign).
With evidence, the smaller subgroup of that class is protected from unlearning during enhancement and is the
verdict; the samples of that class the enhanced models keep go to the review band. Without evidence nothing
is flagged and the defense returns the standard model: a defense that cannot find poisons must not drop
clean samples and hand the backdoor a larger share of the data (benchmarks/results/DECISIONS.md).
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
MIN_SPREAD_P = 1e-6  # p-value of the second choices' fit to the other classes' sizes
# The spread test needs enough samples to reject a natural mode: on digits (subgroups of 40-70 over 9 other
# classes) natural subgroups reached p 0.35 while BadNets' poisons were not spread at all.
MIN_PER_CLASS = 20  # a subgroup is tested only with at least this many samples per other class


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


def spread_pvalues(logits: torch.Tensor, labels: torch.Tensor, in_smaller: torch.Tensor) -> torch.Tensor:
    """float64 C: per class, the chi-square p-value of its smaller subgroup's second choices (the largest
    logit other than the given label) against the other classes' shares of the set; NaN for a subgroup of
    fewer than ``MIN_PER_CLASS`` samples per other class (too few to reject a natural mode)."""
    from scipy.stats import chi2

    k = logits.shape[1]
    second = logits.scatter(1, labels[:, None], float("-inf")).argmax(1)
    sizes = torch.bincount(labels, minlength=k).double()
    p = torch.full((k,), float("nan"), dtype=torch.float64)
    for c in range(k):  # C iterations, each vectorised over N
        sub = in_smaller & (labels == c)
        others = torch.arange(k) != c
        if int(sub.sum()) < MIN_PER_CLASS * (k - 1) or sizes[others].sum() == 0:
            continue
        obs = torch.bincount(second[sub], minlength=k).double()[others]
        expected = sizes[others] / sizes[others].sum() * obs.sum()
        keep = expected > 0
        stat = float(((obs[keep] - expected[keep]) ** 2 / expected[keep]).sum())
        p[c] = float(chi2.sf(stat, max(1, int(keep.sum()) - 1)))
    return p


def evidence_classes(j_star: torch.Tensor, spread_p: torch.Tensor | None = None) -> list[int]:
    """The class whose smaller subgroup is evidence of a backdoor, if any (module docstring): the best
    spread p-value when at least ``MIN_SPREAD_P``, else the largest J* when above ``MIN_J`` and at least
    ``APART`` times every other class's."""
    if spread_p is not None and bool((spread_p.nan_to_num(-1.0) >= MIN_SPREAD_P).any()):
        return [int(spread_p.nan_to_num(-1.0).argmax())]
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


def evidence_record(j_star: torch.Tensor, spread_p: torch.Tensor, in_smaller: torch.Tensor,
                    labels: torch.Tensor, classes: list[int]) -> list[dict]:
    """Per class: J*, the spread p-value, the size of its smaller subgroup, and whether it is the evidence
    class (summary.json, the report's verdict)."""
    return [{"class": c, "j_star": round(float(j_star[c]), 3), "spread_p": float(spread_p[c]),
             "n_subgroup": int((in_smaller & (labels == c)).sum()), "backdoor": c in classes}
            for c in range(len(j_star))]
