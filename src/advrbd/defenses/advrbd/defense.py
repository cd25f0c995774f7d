"""AdvrBD (paper 001, Section V): adversarial-robustness-based backdoor defense, no clean data and no
knowledge of the poison ratio. Stages: warm-up → consistency scoring → latent guard (a departure,
guard.py) → T enhancement rounds → identification → clean training → relabel and relearn. Every threshold
comes from the data; the defense never sees ground truth or the test set.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass

import torch

from ...train.loop import TrainConfig, fit
from ...types import DefenseResult
from ..base import DEFENSES, Defense, DefenseContext
from .enhance import enhance
from .guard import latent_guard
from .identify import identify
from .ranking import verdict_score
from .retrain import clean_training, relabel, relearn, relearn_indices, relearn_masks
from .scoring import consistency_scores
from .settings import LATE_SETTINGS, RELEARN_SETTINGS, AdvrBDSettings
from .stages import StageStore

log = logging.getLogger(__name__)


def _epochs(frac: float, recipe_epochs: int) -> int:
    return max(1, round(frac * recipe_epochs))


@DEFENSES.register("advrbd", "AdvrBD: perturbation-consistency scoring, backdoor enhancement, retrain + relabel")
@dataclass
class AdvrBD(AdvrBDSettings, Defense):
    """AdvrBD with its settings as fields (see ``AdvrBDSettings``)."""

    name = "advrbd"
    flags_samples = True

    def run(self, ctx: DefenseContext) -> DefenseResult:
        data, E = ctx.train, ctx.recipe.epochs
        recipe: TrainConfig = ctx.recipe

        def key(settings: dict) -> str:
            blob = json.dumps([settings, asdict(recipe), len(data)], sort_keys=True, default=str)
            return hashlib.sha256(blob.encode()).hexdigest()[:16]

        # Stages up to enhancement do not depend on the later settings: changing only those (e.g. the
        # identification rule) resumes from the saved enhanced model; changing only relearning's, from the
        # saved clean model.
        def store_without(names: frozenset) -> StageStore:
            return StageStore(ctx.workdir, "advrbd", key({k: v for k, v in asdict(self).items() if k not in names}))

        store, clean_store = store_without(LATE_SETTINGS), store_without(RELEARN_SETTINGS)
        late_store = store_without(frozenset())
        on_round = ctx.extra.get("on_round")
        timings: dict[str, float] = {}

        def timed(stage: str, t0: float) -> None:
            timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t0

        # new_model()'s k-th call gets init seed k, so the warm-up's and the clean model's are built first on
        # every path: their initialisations are then the same whether the warm-up was trained, reused from
        # the standard model or loaded by a resumed run.
        warm, clean = ctx.new_model(), ctx.new_model()
        t = time.perf_counter()
        saved = store.load("warmup")
        reused = saved is None and self.warmup_epochs == 1.0 and ctx.standard_model is not None
        if reused:  # the warm-up is exactly one standard training: reuse the pipeline's (its time is added)
            model = ctx.standard_model()
            store.save("warmup", {"model": model.state_dict(), "reused": True})
        elif saved is None:
            model = warm
            cfg = TrainConfig(**{**recipe.__dict__, "epochs": _epochs(self.warmup_epochs, E), "seed": self.seed})
            fit(model, data, cfg, checkpoint=store.fit_path("warmup"), progress="warm-up" if ctx.progress else False)
            store.save("warmup", {"model": model.state_dict()})
        else:
            model = warm
            model.load_state_dict(saved["model"])
            reused = bool(saved.get("reused", False))
        timed("warmup", t)

        t = time.perf_counter()
        saved = store.load("scores")
        if saved is None:
            scores0 = consistency_scores(model, data, torch.arange(len(data)), self, "initial", ctx.progress)
            store.save("scores", {"scores": scores0})
        else:
            scores0 = saved["scores"]
        timed("scoring", t)

        t = time.perf_counter()
        protected, j_star = torch.zeros(len(data), dtype=torch.bool), torch.zeros(data.num_classes)
        if self.latent_guard:
            saved = store.load("guard")
            if saved is None:
                protected, j_star = latent_guard(model, data, self.seed)
                store.save("guard", {"protected": protected, "j_star": j_star})
            else:
                protected, j_star = saved["protected"], saved["j_star"]
        timed("guard", t)

        t = time.perf_counter()
        saved = store.load("enhanced")
        if saved is None:
            pool_c, history, round_states = enhance(model, data, scores0, self, recipe,
                                                    max(1, round(self.round_epochs)), store, on_round, ctx.progress,
                                                    protected)
            store.save("enhanced", {"model": model.state_dict(), "pool_c": pool_c, "history": json.dumps(history)})
        else:
            model.load_state_dict(saved["model"])
            pool_c, history = saved["pool_c"], json.loads(saved["history"])
            # only the consensus rule needs the models of the rounds before the last
            rounds = ([store.load(f"round{h['round']}") for h in history[1:] if not h.get("stopped")]
                      if self.round_consensus else [])
            round_states = [r["model"] for r in rounds if r is not None]
            if len(round_states) < len(rounds):
                log.warning("round checkpoints of %s were replaced by another run; round_consensus uses "
                            "the enhanced model only", ctx.workdir)
                round_states = []
        timed("enhancement", t)
        timings["enhancement"] -= getattr(on_round, "seconds", 0.0)  # the caller's evaluation is not a stage

        t = time.perf_counter()
        models = [model]
        if self.round_consensus and len(round_states) > 1:
            models = [ctx.new_model() for _ in round_states]
            for m, state in zip(models, round_states):
                m.load_state_dict(state)
        verdicts = [identify(m, data, self.identify_eps, self.pgd_steps, self.seed, self.null_quantile) for m in models]
        # Consensus: flagged only when every round's model flags it (the smallest margin is above 0).
        margin = torch.stack([v[1] for v in verdicts]).min(0).values
        class_thresholds = verdicts[-1][2]
        # guard_flags: the guarded subgroup is flagged too; one score ranks like the verdict (ranking.py)
        guarded = protected & (margin <= 0) if self.guard_flags else torch.zeros_like(protected)
        suspected = (margin > 0) | guarded
        score = verdict_score(margin, suspected, scores0)
        timed("identification", t)
        if ctx.extra.get("stop_after") == "identification":  # `advrbd audit`: flag only, no model
            return DefenseResult(model=None, scores=score, suspected=suspected, threshold=0.0, history=tuple(history),
                                 info={"settings": asdict(self), "stage_seconds": timings, "margin": margin,
                                       "n_flagged": int(suspected.sum()), "n_guarded": int(protected.sum()),
                                       "guard_j_star": j_star.tolist(), "consistency_scores": scores0})

        t = time.perf_counter()
        saved = clean_store.load("clean")
        if saved is None:
            clean_training(clean, data, suspected, recipe, _epochs(self.clean_epochs, E),
                           clean_store.fit_path("clean"), ctx.progress)
            clean_store.save("clean", {"model": clean.state_dict()})
        else:
            clean.load_state_dict(saved["model"])
        timed("clean_training", t)

        labels, n_unlearned, n_rejoined = data.labels.clone(), 0, 0
        if self.relabel and self.relearn_epochs > 0:
            t = time.perf_counter()
            # trust_unguarded: relearning treats only the guarded subgroup's suspects as suspects
            trust = self.latent_guard and self.trust_unguarded and bool(protected.any())
            relearn_suspects = suspected & protected if trust else suspected
            labels, confirmed = relabel(clean, data, relearn_suspects, self.relabel_confidence)
            rejoin, unlearn = relearn_masks(relearn_suspects, labels, confirmed, data.labels, scores0,
                                            self.rejoin_quantile, protected)
            relearn(clean, data, labels, relearn_indices(data, relearn_suspects, labels, rejoin), recipe,
                    _epochs(self.relearn_epochs, E), self.relearn_lr, unlearn, self.relearn_unlearn_weight,
                    late_store.fit_path("relearn"), ctx.progress)
            n_unlearned = int(unlearn.sum()) if self.relearn_unlearn_weight > 0 else 0
            n_rejoined = int((rejoin | (suspected & ~relearn_suspects)).sum())
            timed("relabel_relearn", t)

        info = {
            "settings": asdict(self),
            "reused_standard_training": reused,
            "stage_seconds": timings,
            "n_flagged": int(suspected.sum()),
            "n_clean_pool": int(len(pool_c)),
            "n_unlearned_in_relearning": n_unlearned,
            "n_rejoined_in_relearning": n_rejoined,
            "class_thresholds": class_thresholds.tolist(),
            "n_guarded": int(protected.sum()),
            "n_flagged_by_guard_only": int(guarded.sum()),
            "guard_j_star": j_star.tolist(),
            "consistency_scores": scores0,
            "clean_pool": pool_c,
        }
        info["margin"] = margin
        return DefenseResult(model=clean, scores=score, suspected=suspected, relabels=labels,
                             threshold=0.0, history=tuple(history), info=info)
