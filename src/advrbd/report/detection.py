"""Detection numbers for the report, from samples.csv ground truth or from evaluation.json.

The metrics themselves (SPEC section 6) are :mod:`advrbd.metrics.detection`'s, the one implementation.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..metrics.detection import detection_metrics, rates
from .load import RunData, Samples

_KEYS = ("recall", "fpr", "precision", "n_flagged", "n_poison", "auroc", "cover_flagged", "n_cover")


def compute_detection(sm: Samples) -> dict[str, Any]:
    m = detection_metrics(sm.flagged, sm.poison, sm.cover, sm.score)
    return {k: m[k] for k in _KEYS}


def per_class_rows(run: RunData) -> list[dict[str, Any]]:
    """One dict per class: label, name, n, n_poison, n_flagged, n_false (flagged but not poisoned), recall,
    fpr, precision (``None`` where unknown). Ground-truth counts from samples.csv when it has them, else
    evaluation.json's ``per_class``, else flagged counts only."""
    sm = run.samples
    if sm is not None and sm.poison is not None:
        return _rows_from_samples(run, sm)
    ev = run.evaluation or {}
    if isinstance(ev.get("per_class"), list) and ev["per_class"]:
        return _rows_from_evaluation(run, ev["per_class"])
    if sm is not None:
        return _rows_from_samples(run, sm)
    return []


def _rows_from_samples(run: RunData, sm: Samples) -> list[dict[str, Any]]:
    labels = sorted(set(range(len(run.classes))) | set(int(x) for x in np.unique(sm.given)))
    gt = sm.poison is not None
    cover = sm.cover if sm.cover is not None else np.zeros(len(sm), bool)
    rows = []
    for lab in labels:
        m = sm.given == lab
        f = sm.flagged & m
        row = {"label": lab, "name": run.class_name(lab) if lab >= 0 else "unknown", "n": int(m.sum()),
               "n_flagged": int(f.sum()), "n_poison": None, "n_false": None, "recall": None, "fpr": None,
               "precision": None}
        if gt:
            r = rates(sm.flagged[m], sm.poison[m], cover[m])
            row.update(n_poison=r["n_poison"], n_false=r["n_flagged"] - r["tp"], recall=r["recall"],
                       fpr=r["fpr"], precision=r["precision"])
        rows.append(row)
    return rows


def _rows_from_evaluation(run: RunData, per_class: list) -> list[dict[str, Any]]:
    rows = []
    for i, r in enumerate(x for x in per_class if isinstance(x, dict)):
        lab = r.get("label", i)
        nf, npz, rec = r.get("n_flagged"), r.get("n_poison"), r.get("recall")
        n_false = None
        if isinstance(nf, int) and isinstance(npz, int):
            if npz == 0:
                n_false = nf
            elif isinstance(rec, (int, float)):
                n_false = max(0, nf - round(rec / 100.0 * npz))
        rows.append({"label": lab, "name": str(r.get("class", run.class_name(lab))), "n": r.get("n"),
                     "n_flagged": nf or 0, "n_poison": npz, "n_false": n_false, "recall": rec,
                     "fpr": r.get("fpr"), "precision": r.get("precision")})
    return rows


def target_class(run: RunData, rows: list[dict[str, Any]]) -> tuple[Any, str]:
    """The attack's target class and how it was found: an explicit ``target`` (evaluation.json,
    summary.json or its settings), else the class holding the most true poisons, else (no ground truth)
    the most flagged class, labelled as a guess."""
    settings = run.summary.get("settings") if isinstance(run.summary.get("settings"), dict) else {}
    for src in (run.evaluation or {}, run.summary, settings):
        t = src.get("target")
        if isinstance(t, int) and not isinstance(t, bool):
            return t, "target class"
    poisons = [(r["n_poison"] or 0, r["label"]) for r in rows]
    if poisons and max(poisons)[0] > 0:
        return max(poisons)[1], "target class (holds the most true poisons)"
    flagged = [(r["n_flagged"] or 0, r["label"]) for r in rows]
    if flagged and max(flagged)[0] > 0 and all(r["n_poison"] is None for r in rows):
        return max(flagged)[1], "most flagged class (likely the target; no ground truth)"
    return None, ""
