"""The one-call Python API, in the shape of the ecosystem (scikit-learn / cleanlab): pass what you have —
numpy arrays, torch tensors, a ``Dataset``, any ``nn.Module`` — and get values back.

    from advrbd import defend
    res = defend(images, labels)                 # uint8 N×H×W×C or float N×C×H×W in [0,1]
    res.suspected_indices[:20]                   # most suspicious first
    res.table()                                  # per-sample rows: index, score, verdict, suggested label, action
    res.model                                    # the defended model (float [0,1] NCHW in, logits out)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data.convert import as_image_data
from .types import DefenseResult, EvalResult, ImageData, PoisonedDataset


def actions(suspected: torch.Tensor, given: torch.Tensor, suggested: torch.Tensor | None) -> list[str]:
    """Per sample: "keep" (not flagged), "relabel" (flagged, a different label is suggested), "drop"."""
    sug = given if suggested is None else suggested
    return ["relabel" if s and a != b else "drop" if s else "keep"
            for s, a, b in zip(suspected.tolist(), sug.tolist(), given.tolist())]


@dataclass(frozen=True)
class Defended:
    """Result of :func:`defend`. Labels are reported in the user's own label values.

    model:             the defended model (None for detectors); input float [0,1] NCHW.
    scores:            float N, higher = more suspicious; every flagged sample scores above every kept one.
    suspected:         bool N, True = flagged as poisoned.
    suspected_indices: int64, flagged sample positions, most suspicious first.
    result:            the defense's raw ``DefenseResult`` (history, timings, settings in ``info``).
    """

    model: torch.nn.Module | None
    scores: torch.Tensor
    suspected: torch.Tensor
    suggested_labels: np.ndarray
    given_labels: np.ndarray
    result: DefenseResult
    setup: dict = field(default_factory=dict)

    @property
    def suspected_indices(self) -> torch.Tensor:
        order = torch.argsort(self.scores, descending=True, stable=True)
        return order[self.suspected[order]]

    @property
    def actions(self) -> list[str]:
        return actions(self.suspected, torch.as_tensor(self.given_labels), torch.as_tensor(self.suggested_labels))

    def table(self) -> list[dict[str, Any]]:
        """One dict per sample: index, given_label, score, verdict, suggested_label, action."""
        return [{"index": i, "given_label": g, "score": s, "verdict": "poisoned" if f else "clean",
                 "suggested_label": r, "action": a}
                for i, (g, s, f, r, a) in enumerate(zip(self.given_labels.tolist(), self.scores.tolist(),
                                                        self.suspected.tolist(), self.suggested_labels.tolist(),
                                                        self.actions))]

    def to_pandas(self):
        """The table as a ``pandas.DataFrame`` (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(self.table()).set_index("index")


def defend(data: Any, labels: Any = None, *, defense: str = "advrbd", model: Any = None,
           profile: str | None = None, width: float | None = None, device: str = "auto", seed: int = 0,
           workdir: str | Path | None = None, progress: bool = False, recipe: dict[str, Any] | None = None,
           **settings: Any) -> Defended:
    """Run ``defense`` (default AdvrBD) on an untrusted labelled image set; every sample is used.

    data:    uint8 N×H×W×C or float N×C×H×W in [0,1] (numpy or torch) with ``labels``; a ``(images, labels)``
             pair; a ``torch.utils.data.Dataset`` of ``(image, label)``; or ``ImageData``.
    labels:  any integer array (mapped to 0..K-1 internally, reported back in the original values).
    model:   None (chosen from the data and device), a registered name, ``module:callable`` /
             ``file.py:callable``, a factory ``f(num_classes=K)``, or an ``nn.Module`` (copied, re-initialised).
    profile: a benchmark profile name instead of the automatic choice (its subset is *not* applied).
    """
    from .autosetup import auto_profile, setup_line
    from .pipeline import make_context, model_label, resolve_recipe, run_defense
    from .profiles import get_profile
    from .train.infer import resolve_device

    train, values = as_image_data(data, labels)
    prof = get_profile(profile) if profile else auto_profile(train, resolve_device(device))
    rec = resolve_recipe(prof, device, seed, **(recipe or {}))
    ctx = make_context(train, prof, rec, model=model, width=width, workdir=Path(workdir) if workdir else None,
                       progress=progress, defense=defense)
    result, _ = run_defense(defense, settings, ctx)
    n = len(train)
    scores = result.scores if result.scores is not None else torch.zeros(n)
    suspected = result.suspected if result.suspected is not None else torch.zeros(n, dtype=torch.bool)
    rel = result.relabels if result.relabels is not None else train.labels
    lut = np.asarray(values)
    named = model is None or isinstance(model, str)
    _, setup = setup_line(prof, model_label(model if model is not None else prof.model),
                          (width or prof.width) if named and ":" not in str(model or "") else None, rec, n, n)
    return Defended(result.model, scores, suspected, lut[rel.numpy()], lut[train.labels.numpy()], result, setup)


def poison(data: Any, labels: Any = None, *, attack: str = "badnet", rate: float = 0.05, target: int = 1,
           seed: int = 0, **params: Any) -> tuple[PoisonedDataset, Any]:
    """Red-team helper: (poisoned set with ground truth, the attack object) from images + labels in any form."""
    from .attacks import create_attack

    train, _ = as_image_data(data, labels)
    att = create_attack(attack, rate=rate, target=target, seed=seed, **params)
    return att.poison(train), att


def evaluate(model: torch.nn.Module, data: Any, labels: Any = None, *, attack: Any = None) -> EvalResult:
    """ACC (and ASR with an attack object from :func:`poison`) of ``model`` on a test set in any form."""
    from .metrics.model import evaluate as _evaluate

    test, _ = as_image_data(data, labels)
    return _evaluate(model, test, attack)


__all__ = ["Defended", "defend", "evaluate", "poison", "as_image_data", "ImageData"]
