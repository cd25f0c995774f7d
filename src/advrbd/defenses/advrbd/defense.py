"""AdvrBD (paper 001, Section V): adversarial-robustness-based backdoor defense, no clean data and no
knowledge of the poison ratio, as a pipeline of stages over one per-sample table (table.py):

warm-up → score → guard → enhance → identify → clean training → relearn.

Every stage is a small object with one ``run`` method that fills table columns and returns what it saves;
its checkpoint is keyed by its own settings chained to the previous stage's key (stages.py), so an
interrupted or re-configured run reuses every stage that did not change. Every threshold comes from the
data; the defense never sees ground truth or the test set.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ...types import DefenseResult
from ..base import DEFENSES, Defense, DefenseContext
from .settings import (CleanSettings, EnhanceSettings, GuardSettings, IdentifySettings, RelearnSettings,
                       ScoreSettings, WarmupSettings, validate)
from .stages import StageStore, chain_key
from .steps import STEPS, Run

log = logging.getLogger(__name__)
STAGE_FORMAT = 2  # bump when a stage saves other contents: older run folders then recompute, never misload


@DEFENSES.register("advrbd", "AdvrBD: perturbation-consistency scoring, backdoor enhancement, retrain + relabel")
@dataclass
class AdvrBD(Defense):
    """AdvrBD with one settings object per stage (``--set enhance.rounds=3``; settings.py)."""

    warmup: WarmupSettings = field(default_factory=WarmupSettings, metadata={"doc": "warm-up"})
    score: ScoreSettings = field(default_factory=ScoreSettings, metadata={"doc": "consistency score"})
    guard: GuardSettings = field(default_factory=GuardSettings, metadata={"doc": "latent guard"})
    enhance: EnhanceSettings = field(default_factory=EnhanceSettings, metadata={"doc": "backdoor enhancement"})
    identify: IdentifySettings = field(default_factory=IdentifySettings, metadata={"doc": "identification"})
    clean: CleanSettings = field(default_factory=CleanSettings, metadata={"doc": "clean training"})
    relearn: RelearnSettings = field(default_factory=RelearnSettings, metadata={"doc": "relabel and relearn"})
    seed: int = field(default=0, metadata={"doc": "seed of patches, PGD starts, splits and training"})

    name = "advrbd"
    flags_samples = True

    def __post_init__(self) -> None:
        validate(self)

    def run(self, ctx: DefenseContext) -> DefenseResult:
        run = Run(self, ctx)
        key = chain_key("", "data", [STAGE_FORMAT, asdict(ctx.recipe), len(ctx.train), self.seed])
        store = StageStore(ctx.workdir, "advrbd")
        last = ctx.extra.get("stop_after")  # `advrbd audit`: flag only, no clean model
        for step in STEPS:
            settings = getattr(self, step.settings, None) if step.settings else None
            key = chain_key(key, step.name, asdict(settings) if settings is not None else None)
            saved = store.load(step.name, key)
            t = time.perf_counter()
            if saved is None:
                saved = step.run(run, store, key)
                saved["seconds"] = time.perf_counter() - t + run.extra_seconds.pop(step.name, 0.0)
                store.save(step.name, key, saved)
            step.load(run, saved)
            run.seconds[step.name] = float(saved["seconds"])  # a resumed stage keeps its first timing
            log.info("advrbd: %s done (%.1f s)", step.name, run.seconds[step.name])
            if step.name == last:
                break
        return self._result(run)

    def _result(self, run: Run) -> DefenseResult:
        t = run.table
        info: dict[str, Any] = {
            "settings": asdict(self),
            "stage_seconds": dict(run.seconds),
            "reused_standard_training": run.reused_warmup,
            "n_flagged": int(t["suspected"].sum()),
            "n_review": int(t["review"].sum()),
            "n_guarded": int(t["guarded"].sum()),
            "backdoor_classes": run.evidence_classes,
            "guard_j_star": run.j_star.tolist() if run.j_star is not None else None,
            "evidence": run.evidence,
            "table": t.rows(),
            "consistency_scores": t["consistency"],
            "margin": t["margin"],
        }
        labels = t["label"] if bool((t["label"] >= 0).all()) else None
        return DefenseResult(model=run.final_model, scores=run.score, suspected=t["suspected"].clone(),
                             relabels=labels, threshold=0.0, history=tuple(json.loads(json.dumps(run.history))),
                             info=info)

