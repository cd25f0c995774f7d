"""Class-stratified subsets: smaller training sets, clean reserves and train/test splits that keep
the class proportions of the set they are cut from.
"""
from __future__ import annotations

import torch

from ..errors import BadInputError
from ..seeding import generator
from ..types import ImageData


def allocate(counts: torch.Tensor, n: int) -> torch.Tensor:
    """Per-class sample counts summing to exactly ``n``, proportional to ``counts`` (int64 ``K``).

    Largest-remainder rounding: every class gets ``floor(n * c_k / N)``, then the classes with the
    largest fractional parts (ties: lower class index) get one more until the total is ``n``. No class
    gets more than it has.
    """
    counts = counts.long()
    total = int(counts.sum())
    if not 0 <= n <= total:
        raise BadInputError(f"cannot take {n} samples from a set of {total}")
    exact = counts.double() * n / max(1, total)
    take = exact.floor().long()
    rest = n - int(take.sum())
    order = torch.argsort(-(exact - take.double()), stable=True)
    take[order[:rest]] += 1
    return take


def stratified_indices(labels: torch.Tensor, n: int, seed: int, stage: str = "subset") -> torch.Tensor:
    """Sorted positions of ``n`` samples drawn per class in proportion to the class sizes.

    Which samples of a class are taken is random, drawn from ``generator(seed, stage)``, so the same
    ``(labels, n, seed, stage)`` always gives the same positions.
    """
    labels = torch.as_tensor(labels, dtype=torch.long).cpu()
    if labels.numel() == 0:
        if n:
            raise BadInputError(f"cannot take {n} samples from an empty set")
        return torch.zeros(0, dtype=torch.long)
    counts = torch.bincount(labels)
    take = allocate(counts, n)
    perm = torch.randperm(len(labels), generator=generator(seed, stage))
    # group the random order by class (stable, so each class keeps its random order) and keep the
    # first take[k] members of class k
    key = labels[perm]
    grouped = perm[torch.argsort(key, stable=True)]
    key = labels[grouped]
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(labels)) - starts[key]
    return grouped[rank < take[key]].sort().values


def stratified_subset(data: ImageData, n: int, seed: int) -> ImageData:
    """``n`` samples of ``data`` with its class proportions (counts rounded so the total is exactly n).

    Deterministic: draws from ``advrbd.seeding.generator(seed, "subset")``. The samples keep their
    order in ``data``, and the result's ``index`` points into ``data``'s parent set, as
    :meth:`ImageData.subset` does.
    """
    if not isinstance(n, int) or isinstance(n, bool):
        raise BadInputError(f"subset size must be an integer, got {n!r}")
    if not 0 <= n <= len(data):
        raise BadInputError(f"subset size {n} is outside 0..{len(data)} (the set has {len(data)} samples)")
    return data.subset(stratified_indices(data.labels, n, seed, "subset"))


def stratified_split(
    data: ImageData, test_fraction: float, seed: int, stage: str = "split"
) -> tuple[ImageData, ImageData]:
    """Split ``data`` into ``(rest, held-out)`` with ``round(test_fraction * N)`` stratified held-out samples."""
    if not 0.0 < test_fraction < 1.0:
        raise BadInputError(f"test fraction must be in (0, 1), got {test_fraction}")
    held = stratified_indices(data.labels, round(test_fraction * len(data)), seed, stage)
    mask = torch.ones(len(data), dtype=torch.bool)
    mask[held] = False
    return data.subset(mask.nonzero().flatten()), data.subset(held)
