"""The stages of AdvrBD. Each one reads and fills columns of the run's per-sample table; ``run`` computes and
returns what is saved (tensors and plain values), ``load`` puts a saved stage back into the run."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ...train.infer import predict_logits
from ...train.loop import TrainConfig, fit
from .._common import scaled_epochs
from ..base import DefenseContext
from .enhance import enhance
from .guard import evidence_classes, evidence_record, latent_splits, spread_pvalues, verdict
from .identify import combine, round_margins
from .policy import relearn_actions, trained
from .ranking import verdict_score
from .retrain import clean_predictions, clean_training, relearn
from .scoring import consistency_scores
from .table import SampleTable


class Run:
    """State of one AdvrBD run shared by its stages."""

    def __init__(self, defense, ctx: DefenseContext):
        self.s, self.ctx, self.data = defense, ctx, ctx.train
        self.table = SampleTable(len(ctx.train))
        # new_model()'s k-th call gets init seed k: the warm-up's and the clean model's are built first on every
        # path, so their initialisations do not depend on which stages were resumed.
        self.model, self.clean = ctx.new_model(), ctx.new_model()
        self.final_model: torch.nn.Module | None = None
        self.round_states: list[dict] = []
        self.history: list[dict] = []
        self.seconds: dict[str, float] = {}
        self.extra_seconds: dict[str, float] = {}
        self.reused_warmup = False
        self.warm_state: dict = {}
        self.j_star: torch.Tensor | None = None
        self.in_smaller = torch.zeros(len(ctx.train), dtype=torch.bool)
        self.evidence_classes: list[int] = []
        self.evidence: list[dict] = []
        self.score = torch.zeros(len(ctx.train))

    def epochs(self, frac: float) -> int:
        return scaled_epochs(frac, self.ctx.recipe.epochs)


@dataclass(frozen=True)
class Step:
    name: str
    settings: str | None
    run: Callable[[Run, Any, str], dict]
    load: Callable[[Run, dict], None]


def _warmup(r: Run, store, key) -> dict:
    ctx, s = r.ctx, r.s.warmup
    if s.epochs == 1.0 and ctx.standard_model is not None:  # the warm-up is one standard training: reuse it
        r.model.load_state_dict(ctx.standard_model().state_dict())
        r.reused_warmup = True
    else:
        cfg = TrainConfig(**{**ctx.recipe.__dict__, "epochs": r.epochs(s.epochs), "seed": r.s.seed})
        fit(r.model, r.data, cfg, checkpoint=store.fit_path("warmup", key), progress="warm-up" if ctx.progress else False)
    return {"model": r.model.state_dict(), "reused": r.reused_warmup}


def _load_warmup(r: Run, saved: dict) -> None:
    r.model.load_state_dict(saved["model"])
    r.warm_state = saved["model"]
    r.reused_warmup = bool(saved.get("reused", False))


def _score(r: Run, store, key) -> dict:
    r.table["consistency"] = consistency_scores(r.model, r.data, torch.arange(len(r.data)), r.s.score, r.s.seed,
                                                "initial", r.ctx.progress)
    return {"consistency": r.table["consistency"]}


def _guard(r: Run, store, key) -> dict:
    if r.s.guard.rule == "off":
        return {"j_star": torch.zeros(0), "spread_p": torch.zeros(0), "in_smaller": r.in_smaller, "classes": []}
    j, smaller = latent_splits(r.model, r.data, r.s.seed)
    p = spread_pvalues(predict_logits(r.model, r.data), r.data.labels.cpu(), smaller)
    return {"j_star": j, "spread_p": p, "in_smaller": smaller, "classes": evidence_classes(j, p)}


def _load_guard(r: Run, saved: dict) -> None:
    r.j_star = saved["j_star"] if saved["j_star"].numel() else None
    r.in_smaller = saved["in_smaller"]
    r.evidence_classes = [int(c) for c in saved["classes"]]
    if r.j_star is not None:
        r.evidence = evidence_record(r.j_star, saved["spread_p"], r.in_smaller, r.data.labels, r.evidence_classes)


def _acts(r: Run) -> bool:
    """Whether the stages after the guard run: with evidence of a backdoor, or without the guard (paper)."""
    return bool(r.evidence_classes) or r.s.guard.rule == "off"


def _enhance(r: Run, store, key) -> dict:
    if not _acts(r):
        return {"model": r.model.state_dict(), "pool_round": r.table["pool_round"], "history": [], "rounds": {}}
    protect, _ = verdict(r.evidence_classes, r.in_smaller, r.data.labels, None)
    on_round = r.ctx.extra.get("on_round")
    pool_round, history, states = enhance(r.model, r.data, r.table["consistency"], protect, r.s.enhance, r.s.score,
                                          r.ctx.recipe, r.s.seed, store, key, on_round, r.ctx.progress)
    r.extra_seconds["enhance"] = -getattr(on_round, "seconds", 0.0)  # the caller's evaluation is not a stage
    return {"model": r.model.state_dict(), "pool_round": pool_round, "history": history,
            "rounds": {str(i): s for i, s in enumerate(states)}}


def _load_enhance(r: Run, saved: dict) -> None:
    r.model.load_state_dict(saved["model"])
    r.table["pool_round"] = saved["pool_round"]
    r.history = list(saved["history"])
    r.round_states = [saved["rounds"][str(i)] for i in range(len(saved["rounds"]))]


def _identify(r: Run, store, key) -> dict:
    n = len(r.data)
    if not _acts(r):
        nothing = torch.zeros(n, dtype=torch.bool)
        return {"margin": torch.full((n,), float("nan")), "margins": torch.zeros(0, n), "suspected": nothing,
                "review": nothing}
    models = []
    for state in r.round_states or [r.model.state_dict()]:
        m = copy.deepcopy(r.model)
        m.load_state_dict(state)
        models.append(m)
    margins = round_margins(models, r.data)
    r.table.margins = margins
    margin = combine(margins, r.s.identify.rule)
    if r.s.guard.rule == "off":  # the paper: every sample the enhanced model keeps is poisoned
        suspected, review = margin > 0, torch.zeros(n, dtype=torch.bool)
    else:
        suspected, review = verdict(r.evidence_classes, r.in_smaller, r.data.labels, margin)
    return {"margin": margin, "margins": torch.stack(margins), "suspected": suspected, "review": review}


def _load_identify(r: Run, saved: dict) -> None:
    t = r.table
    t.margins = list(saved["margins"])
    for col in ("margin", "suspected", "review"):
        t[col] = saved[col]
    t["guarded"] = t["suspected"] if r.s.guard.rule != "off" else torch.zeros(len(r.data), dtype=torch.bool)
    r.score = verdict_score(t["margin"].nan_to_num(0.0), t["suspected"], t["consistency"])


def _clean(r: Run, store, key) -> dict:
    t = r.table
    excluded = t["suspected"] | t["review"]
    if not bool(excluded.any()) and r.s.warmup.epochs == 1.0:
        r.clean.load_state_dict(r.warm_state)  # nothing flagged: clean training would be the standard training
    else:
        clean_training(r.clean, r.data, excluded, r.ctx.recipe, r.epochs(r.s.clean.epochs),
                       store.fit_path("clean", key), r.ctx.progress)
    pred, conf = clean_predictions(r.clean, r.data)
    return {"model": r.clean.state_dict(), "clean_pred": pred, "clean_conf": conf}


def _load_clean(r: Run, saved: dict) -> None:
    r.clean.load_state_dict(saved["model"])
    r.table["clean_pred"], r.table["clean_conf"] = saved["clean_pred"], saved["clean_conf"]
    r.final_model = r.clean


def _relearn(r: Run, store, key) -> dict:
    t, s = r.table, r.s.relearn
    action, label = relearn_actions(t, r.data.labels, s.policy, s.min_confidence)
    t["action"], t["label"] = action, label
    if s.epochs > 0 and bool((t["suspected"] | t["review"]).any()):
        relearn(r.clean, r.data, label, trained(action), r.ctx.recipe, r.epochs(s.epochs), s.lr,
                store.fit_path("relearn", key), r.ctx.progress)
    return {"model": r.clean.state_dict(), "action": action, "label": label}


def _load_relearn(r: Run, saved: dict) -> None:
    r.clean.load_state_dict(saved["model"])
    r.table["action"], r.table["label"] = saved["action"], saved["label"]
    r.final_model = r.clean


def _set(columns: tuple[str, ...]) -> Callable[[Run, dict], None]:
    def load(r: Run, saved: dict) -> None:
        for c in columns:
            r.table[c] = saved[c]
    return load


STEPS = (
    Step("warmup", "warmup", _warmup, _load_warmup),
    Step("score", "score", _score, _set(("consistency",))),
    Step("guard", "guard", _guard, _load_guard),
    Step("enhance", "enhance", _enhance, _load_enhance),
    Step("identify", "identify", _identify, _load_identify),
    Step("clean", "clean", _clean, _load_clean),
    Step("relearn", "relearn", _relearn, _load_relearn),
)
