"""Stage 2: backdoor enhancement (paper Alg. 2, Eq. 4).

Each round trains on L(D_r) − λ·L_bounded(D_c): gradient descent on the pool that may hold poison, bounded
gradient ascent on the surely-clean pool (a sample's ascent stops once its loss exceeds ``unlearn_bound``,
so unlearning cannot diverge). Then the next ρ·N most sensitive samples of D_r move to D_c. Clean accuracy
falls and attack success rises with every round (paper Fig. 6). Guarded samples (guard.py) never join D_c.
Rounds stop early, keeping the previous model, when a round raises the number of samples the model still
classifies as their given label: a label-free sign that it started unlearning the backdoor (digits: round 3
took ASR from 100% to 55% while that count rose 399 -> 460).
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn.functional as F

from ...train.infer import resolve_device
from ...train.loop import TrainConfig, fit
from ...types import ImageData
from .identify import given_label_margin
from .scoring import consistency_scores
from .settings import EnhanceSettings, ScoreSettings


def bounded_unlearning_loss(in_clean_pool: torch.Tensor, bound: float):
    """Per-sample CE, clipped at ``bound`` for clean-pool samples (zero gradient once above it)."""

    def loss(logits: torch.Tensor, targets: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits, targets, reduction="none")
        return torch.where(in_clean_pool[idx], ce.clamp(max=bound), ce)

    return loss


def most_sensitive(scores: torch.Tensor, pool: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``pool`` (indices, ``scores`` aligned) into (its k largest-KL samples, the rest)."""
    order = torch.argsort(scores, descending=True, stable=True)
    take = torch.zeros(len(pool), dtype=torch.bool)
    take[order[: max(0, min(k, len(pool)))]] = True
    return pool[order][take[order]], pool[~take]


def enhance(model: torch.nn.Module, data: ImageData, consistency: torch.Tensor, guarded: torch.Tensor,
            s: EnhanceSettings, score: ScoreSettings, recipe: TrainConfig, seed: int, store, key: str,
            on_round: Callable[[int, torch.nn.Module], dict] | None = None,
            progress: bool = False) -> tuple[torch.Tensor, list[dict], list[dict]]:
    """Run every round on ``model`` in place. Returns (pool_round int64 N: the round whose partition moved a
    sample to D_c, −1 never; per-round history; the model state after each kept round, CPU copies).
    ``store``/``key``: each finished round is saved, so an interrupted run resumes there."""
    n = len(data)
    k = max(1, round(s.partition_rate * n))
    ranking = consistency.masked_fill(guarded, float("-inf"))  # guarded samples never join D_c
    pool_round = torch.full((n,), -1, dtype=torch.long)
    moved, pool_r = most_sensitive(ranking, torch.arange(n), k)
    pool_round[moved] = 0
    kept = int((given_label_margin(model, data) > 0).sum())
    history = [{"round": 0, "n_clean_pool": int((pool_round >= 0).sum()), "n_kept": kept,
                **(on_round(0, model) if on_round else {})}]
    states: list[dict] = []
    epochs = max(1, round(s.epochs))
    for r in range(1, s.rounds + 1):
        saved = store.load(f"round{r}", key)
        if saved is not None:
            model.load_state_dict(saved["model"])
            pool_round, pool_r, rec = saved["pool_round"], saved["pool_r"], dict(saved["record"])
            history.append(rec)
            if rec.get("stopped"):
                break
            states.append(copy.deepcopy(saved["model"]))
            continue
        before = copy.deepcopy(model.state_dict())
        in_c = pool_round >= 0
        weights = torch.where(in_c, torch.tensor(-s.unlearn_weight), torch.tensor(1.0))
        cfg = TrainConfig(**{**recipe.__dict__, "epochs": epochs, "lr": s.lr, "schedule": "constant",
                             "seed": seed + 1000 + r, "label_smoothing": 0.0})
        fit(model, data, cfg, weights=weights,
            loss=bounded_unlearning_loss(in_c.to(resolve_device(cfg.device)), s.unlearn_bound),
            checkpoint=store.fit_path(f"round{r}", key), progress=f"enhancement round {r}" if progress else False)
        now = int((given_label_margin(model, data) > 0).sum())
        if now > kept:  # the round unlearned the backdoor rather than clean features: keep the previous model
            model.load_state_dict(before)
            rec = {"round": r, "n_clean_pool": int(in_c.sum()), "n_kept": now, "stopped": True}
            history.append(rec)
            store.save(f"round{r}", key, {"model": model.state_dict(), "pool_round": pool_round, "pool_r": pool_r,
                                          "record": rec})
            break
        kept = now
        if r < s.rounds:  # the last partition would only grow D_c, which nothing uses afterwards
            sc = (consistency_scores(model, data, pool_r, score, seed, f"round{r}", progress)
                  if s.pool == "rescore" else consistency[pool_r])
            moved, pool_r = most_sensitive(sc.masked_fill(guarded[pool_r], float("-inf")), pool_r, k)
            pool_round[moved] = r
        rec = {"round": r, "n_clean_pool": int((pool_round >= 0).sum()), "n_kept": kept,
               **(on_round(r, model) if on_round else {})}
        history.append(rec)
        states.append({name: v.detach().to("cpu", copy=True) for name, v in model.state_dict().items()})
        store.save(f"round{r}", key, {"model": model.state_dict(), "pool_round": pool_round, "pool_r": pool_r,
                                      "record": rec})
    return pool_round, history, states
