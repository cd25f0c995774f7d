"""One suspicion score that ranks like the verdict (samples.csv's ``score``).

The verdict comes from identification (margin > 0, or in the latent guard's subgroup); a score that is the
margin alone disagrees with it (guarded samples have margins ≤ 0) and, with a constant for the guarded
subgroup, the most suspicious images shown were clean (digits demo: score AUROC 0.57 at 100% recall).

Score: ``within`` a group the samples are ordered by the mean of two percentile ranks, the margin's (higher
= more suspicious) and the consistency KL's (lower = more robust = more suspicious, paper Eq. 3); flagged
samples get that rank in (0, 1], kept samples the rank − 1 in (−1, 0]. So ``score > 0`` is exactly the
verdict, every flagged sample ranks above every kept one, and the AUROC of the score is at least the
verdict's balanced accuracy whenever the within-group order is better than chance.
"""
from __future__ import annotations

import torch


def percentile_rank(x: torch.Tensor) -> torch.Tensor:
    """float N in (0, 1]: (rank + 1) / N of each value in ascending order (ties broken by position)."""
    n = x.numel()
    r = torch.empty(n, dtype=torch.float64)
    r[torch.argsort(x.double(), stable=True)] = torch.arange(1, n + 1, dtype=torch.float64)
    return (r / max(1, n)).float()


def verdict_score(margin: torch.Tensor, suspected: torch.Tensor, consistency: torch.Tensor | None = None,
                  consistency_weight: float = 0.5) -> torch.Tensor:
    """float N: flagged in (0, 1], kept in (−1, 0]; within each group higher = more suspicious.

    margin:      identification margin (higher = more suspicious), float N.
    suspected:   the verdict, bool N.
    consistency: perturbation-consistency KL (lower = more suspicious), float N, or None (margin only).
    """
    if margin.numel() == 0:
        return margin.float()
    key = percentile_rank(margin)
    if consistency is not None and consistency_weight > 0:
        key = (1 - consistency_weight) * key + consistency_weight * percentile_rank(-consistency.float())
    key = key.clamp_min(1e-6)  # strictly positive, so a flagged sample never scores 0
    return torch.where(suspected, key, key - 1)
