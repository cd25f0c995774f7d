"""Benchmark profiles (SPEC §9): which data, model and training recipe a run uses.

Budgets on 2 CPU cores: smoke = seconds, quick = one standard training ≤ 3 min (10,000-image stratified
CIFAR-10 subset), cpu = one standard training ≤ 15 min with ≥ 85% accuracy (full CIFAR-10),
paper = ResNet-18 width 1 on full CIFAR-10 (GPU).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .errors import BadInputError
from .train.loop import TrainConfig


@dataclass(frozen=True)
class Profile:
    name: str
    model: str
    width: float | None
    recipe: TrainConfig
    subset: int | None = None  # stratified training subset size, None = all
    data: str | None = None  # default data spec (only smoke has one: it needs no files)
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# Recipes measured on CIFAR-10 JPEGs, 2 CPU cores, bf16 autocast + channels_last (benchmarks/results/):
# fastnet width 0.5 at batch 512 trains at ~1,000 images/s. Label smoothing 0.2 and a one-cycle
# schedule with peak lr 0.2 were the best of the recipes tried for short runs.
_FAST = TrainConfig(epochs=12, batch_size=512, lr=0.2, label_smoothing=0.2, weight_decay=5e-4)

PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        "smoke", "tiny", 1.0,
        TrainConfig(epochs=4, batch_size=128, lr=0.05, weight_decay=5e-4),
        data="synthetic:n=1000,test=300,size=32,classes=10,seed=0",
        description="synthetic images, tiny CNN: checks the machinery in seconds",
    ),
    "demo": Profile(
        "demo", "fastnet", 0.5,
        # digits are not mirror-symmetric, so no flips; 12 epochs reach ~99% on the 449 test digits. Batch 64
        # (126 steps -> 252): at batch 128 whether the 67 BadNets poisons were learned was a knife edge (seed 0:
        # ASR 97.5% with 1 thread, 55.2% with 2 in fp32, and then the poisons were not the robust samples,
        # AUROC 0.38); at batch 64, seeds 0-2 on 2 threads: ASR 98.3-99.3%, AUROC 0.88-0.99 (demo_digits.md).
        TrainConfig(epochs=12, batch_size=64, lr=0.1, label_smoothing=0.1, weight_decay=5e-4, flip=False),
        data="digits",
        description="scikit-learn's bundled digits (real scans, 32×32), fastnet x0.5: the `advrbd demo` default",
    ),
    # quick: 9,500 images at batch 512 are only 18 steps an epoch, and clean accuracy after 16 epochs moved
    # with the initialisation (72.74 / 75.41 / 74.63% for init seeds 0-2). Batch 128 at peak lr 0.1:
    # 77.89 / 77.97 / 77.77% in the same time (~125 s); the backdoors are learned better too (init 0,
    # ACC / ASR: BadNets 69.64 / 74.98 -> 76.90 / 87.29, Blend 70.14 / 71.76 -> 76.30 / 79.14).
    "quick": Profile(
        "quick", "fastnet", 0.5, replace(_FAST, epochs=16, batch_size=128, lr=0.1), subset=10_000,
        description="CIFAR-10 stratified 10,000-image subset, fastnet x0.5: one training ≤ 3 min on 2 cores",
    ),
    "cpu": Profile(
        "cpu", "fastnet", 0.5, _FAST,
        description="full CIFAR-10, fastnet x0.5: one training ≤ 15 min and ≥ 85% on 2 cores",
    ),
    # paper: 30 epochs (not the paper's unstated length) so that a no-defense and an AdvrBD cell of two
    # attacks fit in the 30 minutes of GPU time a session is lent.
    "paper": Profile(
        "paper", "resnet18", 1.0,
        TrainConfig(epochs=30, batch_size=256, lr=0.1, weight_decay=5e-4, schedule="cosine", warmup=0.05),
        description="full CIFAR-10, ResNet-18 width 1 (the paper's setting; needs a GPU)",
    ),
}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise BadInputError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}")
    return PROFILES[name]
