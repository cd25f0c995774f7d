"""Settings of AdvrBD, one small dataclass per stage (``--set enhance.rounds=3``).

The paper (Section V) leaves every value unstated; defaults were chosen by measurement on tuning cells and
reported on validation cells (benchmarks/results/). Alternatives that lost are recorded in
benchmarks/results/DECISIONS.md, not kept as switches. Each stage's checkpoint is keyed by its own settings
chained to the previous stage's key (stages.py), so changing a late setting reuses every earlier stage.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Literal

from ...errors import ConfigError


def _doc(text: str, **kw):
    return field(metadata={"doc": text}, **kw)


@dataclass(frozen=True)
class WarmupSettings:
    # A shorter warm-up does not separate poison from clean (AUROC 0.50 after 3 epochs): one standard training.
    epochs: float = _doc("warm-up length as a fraction of the recipe's epochs (1 = reuse the standard model)", default=1.0)


@dataclass(frozen=True)
class ScoreSettings:
    """Perturbation-consistency score (paper Alg. 1, Eq. 3)."""

    patch_frac: float = _doc("patch side r as a fraction of the image side", default=0.5)
    eps: float = _doc("L-inf bound of the patch perturbation, [0,1] pixel units", default=8 / 255)
    pgd_steps: int = _doc("PGD steps per sample", default=2)
    batch_size: int = _doc("batch size of scoring", default=512)


@dataclass(frozen=True)
class GuardSettings:
    """Latent guard (guard.py, a departure from the paper)."""

    rule: Literal["evidence", "off"] = _doc(
        "evidence: act only on classes whose latent split stands apart from every other class's, flagging "
        "that subgroup (guard.py); off: the paper (no guard, every kept sample is flagged)", default="evidence")


@dataclass(frozen=True)
class EnhanceSettings:
    """Backdoor enhancement (paper Alg. 2, Eq. 4)."""

    rounds: int = _doc("T: enhancement rounds", default=3)
    epochs: float = _doc("training epochs per round", default=2.0)
    partition_rate: float = _doc("ρ: fraction of the set moved to the surely-clean pool per round", default=0.1)
    unlearn_weight: float = _doc("λ: weight of the bounded gradient ascent on the surely-clean pool", default=4.0)
    unlearn_bound: float = _doc("per-sample loss (nats) above which ascent stops", default=5.0)
    lr: float = _doc("constant learning rate of the rounds", default=0.05)
    # Re-scoring D_r each round moved more poisons into D_c (37 vs 14 by round 3) and costs 2 scoring passes.
    pool: Literal["initial", "rescore"] = _doc(
        "initial: later partitions follow the warm-up ranking; rescore: re-score D_r each round (paper)",
        default="initial")


@dataclass(frozen=True)
class IdentifySettings:
    """Identification with the enhanced model(s) (identify.py)."""

    # The enhanced model's sink classes change from round to round while a poison keeps its label in every
    # round: requiring every round's agreement lowered FPR by 5-8 points on quick CIFAR-10.
    rule: Literal["consensus", "paper"] = _doc(
        "consensus: flagged when the model after every round keeps the given label; paper: the last round's model",
        default="consensus")


@dataclass(frozen=True)
class CleanSettings:
    epochs: float = _doc("clean training length as a fraction of the recipe's epochs", default=1.0)


@dataclass(frozen=True)
class RelearnSettings:
    """Relabel and relearn (paper Eq. 5; policy.py decides every sample's action)."""

    policy: Literal["guarded", "paper"] = _doc(
        "guarded: relabel the flagged samples the clean model is sure of and leave the others out, review-band "
        "samples rejoin with their given label; paper: relabel every flagged sample with the clean model's "
        "prediction", default="guarded")
    epochs: float = _doc("fine-tuning length on the relabelled set, fraction of the recipe (0 = skip)", default=0.2)
    lr: float = _doc("peak learning rate of relearning", default=0.02)
    # The clean model barely saw the target class (its clean samples are flagged with the poisons): below 0.5
    # confidence its guess cost 10 points of ACC on digits + BadNets.
    confidence: float | None = _doc(
        "guarded policy: a flagged sample is relabelled only when the clean model's top probability is at "
        "least this (default 0.5); not used by the paper policy", default=None)

    @property
    def min_confidence(self) -> float:
        return 0.5 if self.confidence is None else self.confidence


STAGES = {"warmup": WarmupSettings, "score": ScoreSettings, "guard": GuardSettings, "enhance": EnhanceSettings,
          "identify": IdentifySettings, "clean": CleanSettings, "relearn": RelearnSettings}


def _finite(name: str, value: float, ok: bool) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and ok):
        raise ConfigError(f"invalid AdvrBD setting {name}={value!r} (see `advrbd list defenses`)")


def validate(s) -> None:
    """Range checks across stages (``s`` is the AdvrBD dataclass); raises ``ConfigError``."""
    _finite("warmup.epochs", s.warmup.epochs, s.warmup.epochs > 0)
    _finite("score.patch_frac", s.score.patch_frac, 0 < s.score.patch_frac <= 1)
    _finite("score.eps", s.score.eps, 0 < s.score.eps <= 1)
    _finite("score.pgd_steps", s.score.pgd_steps, s.score.pgd_steps >= 0)
    _finite("score.batch_size", s.score.batch_size, s.score.batch_size >= 1)
    e = s.enhance
    _finite("enhance.rounds", e.rounds, e.rounds >= 0)
    _finite("enhance.epochs", e.epochs, e.epochs > 0)
    _finite("enhance.partition_rate", e.partition_rate, 0 < e.partition_rate < 1)
    _finite("enhance.partition_rate * (rounds + 1)", e.partition_rate * (e.rounds + 1), e.partition_rate * (e.rounds + 1) < 1)
    _finite("enhance.unlearn_weight", e.unlearn_weight, e.unlearn_weight >= 0)
    _finite("enhance.unlearn_bound", e.unlearn_bound, e.unlearn_bound > 0)
    _finite("enhance.lr", e.lr, e.lr > 0)
    _finite("clean.epochs", s.clean.epochs, s.clean.epochs > 0)
    r = s.relearn
    _finite("relearn.epochs", r.epochs, r.epochs >= 0)
    _finite("relearn.lr", r.lr, r.lr > 0)
    if r.confidence is not None:
        if r.policy != "guarded":
            raise ConfigError(f"relearn.confidence has no effect under relearn.policy={r.policy!r} "
                              "(it applies to the guarded policy only)")
        _finite("relearn.confidence", r.confidence, 0 <= r.confidence <= 1)
    _finite("seed", s.seed, float(s.seed).is_integer() and s.seed >= 0)


def flat_names() -> list[str]:
    """Every setting as ``stage.key`` (for error messages and `advrbd list defenses`)."""
    return [f"{stage}.{f.name}" for stage, cls in STAGES.items() for f in fields(cls)] + ["seed"]
