"""Stage 2: backdoor enhancement (paper Alg. 2, Eq. 4).

Each round trains on L(D_r) − λ·L_bounded(D_c): gradient descent on the pool that may hold poison,
bounded gradient ascent on the surely-clean pool (a sample's ascent stops once its loss exceeds
``unlearn_bound``, so unlearning cannot diverge). Then D_r is re-scored and its ρ·N most sensitive
samples move to D_c. Clean accuracy falls and attack success rises with every round (paper Fig. 6).
Rounds stop early, keeping the previous model, when a round raises the number of samples the model
still classifies as their given label (a label-free sign that it started unlearning the backdoor).
Options (settings.py): ``stratify_pool`` moves ρ·n_c samples of each given class c instead of ρ·N overall;
``move_unkept`` moves only samples the round's model misclassifies.
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
from .scoring import consistency_scores, move_most_sensitive
from .settings import AdvrBDSettings


def bounded_unlearning_loss(in_clean_pool: torch.Tensor, bound: float):
    """Per-sample CE, clipped at ``bound`` for clean-pool samples (zero gradient once above it)."""

    def loss(logits: torch.Tensor, targets: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits, targets, reduction="none")
        return torch.where(in_clean_pool[idx], ce.clamp(max=bound), ce)

    return loss


def enhancement_round(
    model: torch.nn.Module,
    data: ImageData,
    pool_c: torch.Tensor,
    s: AdvrBDSettings,
    recipe: TrainConfig,
    epochs: int,
    round_index: int,
    checkpoint=None,
    progress: bool = False,
) -> None:
    """Train ``model`` in place for one round on the whole set with +1 / −λ weights."""
    n = len(data)
    in_c = torch.zeros(n, dtype=torch.bool)
    in_c[pool_c] = True
    weights = torch.where(in_c, torch.tensor(-s.unlearn_weight), torch.tensor(1.0))
    cfg = TrainConfig(**{**recipe.__dict__, "epochs": epochs, "lr": s.enhance_lr, "schedule": "constant",
                         "seed": s.seed + 1000 + round_index, "label_smoothing": 0.0})
    dev_mask = in_c.to(resolve_device(cfg.device))
    fit(model, data, cfg, weights=weights, loss=bounded_unlearning_loss(dev_mask, s.unlearn_bound),
        checkpoint=checkpoint, progress=f"enhancement round {round_index}" if progress else False)


def enhance(
    model: torch.nn.Module,
    data: ImageData,
    scores0: torch.Tensor,
    s: AdvrBDSettings,
    recipe: TrainConfig,
    epochs: int,
    stage_store,
    on_round: Callable[[int, torch.nn.Module], dict] | None = None,
    progress: bool = False,
    protected: torch.Tensor | None = None,
) -> tuple[torch.Tensor, list[dict], list[dict]]:
    """Run all rounds. Returns the final clean pool D_c (indices), per-round history records and the
    model's state after each finished round (CPU copies; the last one is the enhanced model).

    ``stage_store`` persists (model, pools) after each round so an interrupted run resumes there.
    ``protected`` (bool N, guard.py): samples ranked last by every partition, so they never join D_c.
    """
    n = len(data)
    k = max(1, round(s.partition_rate * n))
    labels = data.labels
    quota = (s.partition_rate * torch.bincount(labels)).round().long() if s.stratify_pool else None
    if protected is not None:
        scores0 = scores0.masked_fill(protected, float("-inf"))
    pool_c, pool_r = move_most_sensitive(scores0, torch.arange(n), k, quota, labels)
    kept = int((given_label_margin(model, data) > 0).sum())
    history = [{"round": 0, "n_clean_pool": len(pool_c), "n_kept": kept, **(on_round(0, model) if on_round else {})}]
    states: list[dict] = []

    def snapshot() -> None:
        states.append({k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()})

    for r in range(1, s.rounds + 1):
        saved = stage_store.load(f"round{r}")
        if saved is not None:
            model.load_state_dict(saved["model"])
            pool_c, pool_r = saved["pool_c"], saved["pool_r"]
            history.append(dict(saved["record"]))
            kept = history[-1]["n_kept"]
            if history[-1].get("stopped"):
                break
            snapshot()
            continue
        before = copy.deepcopy(model.state_dict())
        enhancement_round(model, data, pool_c, s, recipe, epochs, r, stage_store.fit_path(f"round{r}"), progress)
        margin = given_label_margin(model, data)
        now = int((margin > 0).sum())
        if now > kept:
            # Enhancement works while fewer samples keep their given label. When the count rises, the round
            # unlearned the backdoor rather than clean features (measured on digits: round 3 took ASR from
            # 100% to 55% while the count rose 399 -> 460), so keep the previous round's model and stop.
            model.load_state_dict(before)
            rec = {"round": r, "n_clean_pool": len(pool_c), "n_kept": now, "stopped": True}
            history.append(rec)
            stage_store.save(f"round{r}", {"model": model.state_dict(), "pool_c": pool_c, "pool_r": pool_r,
                                           "record": rec})
            break
        kept = now
        if r < s.rounds:  # the last re-score would only grow D_c, which nothing uses afterwards
            sc = consistency_scores(model, data, pool_r, s, f"round{r}", progress) if s.rescore else scores0[pool_r]
            if protected is not None:
                sc = sc.masked_fill(protected[pool_r], float("-inf"))
            # candidates: D_r samples this round's model misclassifies (all of D_r without move_unkept)
            cand = margin[pool_r] <= 0 if s.move_unkept else torch.ones(len(pool_r), dtype=torch.bool)
            moved, rest = move_most_sensitive(sc[cand], pool_r[cand], k, quota, labels)
            pool_c, pool_r = torch.cat([pool_c, moved]), torch.cat([pool_r[~cand], rest])
        rec = {"round": r, "n_clean_pool": len(pool_c), "n_kept": kept, **(on_round(r, model) if on_round else {})}
        history.append(rec)
        snapshot()
        stage_store.save(f"round{r}", {"model": model.state_dict(), "pool_c": pool_c, "pool_r": pool_r,
                                       "record": rec})
    return pool_c, history, states
