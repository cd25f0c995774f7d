"""Detection metrics against ground truth (SPEC §6): the one implementation, used by the pipeline's
evaluation and by the report. Evaluation only: never called inside a defense.

Poisoned samples are the positives. Cover samples (a trigger variant with their true label) are left out of
recall, FPR, precision and AUROC and reported separately; clean = neither poisoned nor cover. Percent,
except AUROC in [0, 1]. Inputs may be torch tensors or numpy arrays.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def _np(x: Any, dtype=None) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _pct(num: int, den: int) -> float | None:
    return 100.0 * num / den if den else None


def auroc(scores: Any, positive: Any) -> float | None:
    """Area under the ROC curve of ``scores`` (higher = positive; ties count half) over the samples with a
    finite score; None unless both classes are present."""
    from sklearn.metrics import roc_auc_score

    s, y = _np(scores, np.float64), _np(positive, bool)
    ok = np.isfinite(s)
    s, y = s[ok], y[ok]
    if not y.any() or y.all():
        return None
    return float(roc_auc_score(y, s))


def rates(flagged: Any, poison: Any, cover: Any | None = None) -> dict[str, Any]:
    """Recall, FPR, precision (percent, None where undefined) and counts of ``flagged`` against ground truth."""
    f, p = _np(flagged, bool), _np(poison, bool)
    c = np.zeros_like(p) if cover is None else _np(cover, bool) & ~p
    clean = ~p & ~c
    tp, fp = int((f & p).sum()), int((f & clean).sum())
    return {"n": len(f), "n_poison": int(p.sum()), "n_cover": int(c.sum()), "n_flagged": int(f.sum()),
            "tp": tp, "fp": fp, "recall": _pct(tp, int(p.sum())), "fpr": _pct(fp, int(clean.sum())),
            "precision": _pct(tp, tp + fp), "cover_flagged": _pct(int((f & c).sum()), int(c.sum()))}


def detection_metrics(
    suspected: Any,
    poison_mask: Any,
    cover_mask: Any | None = None,
    scores: Any | None = None,
    labels: Any | None = None,
    classes: Sequence[str] | None = None,
) -> dict:
    """Recall/TPR, FPR, precision, F1 (percent), AUROC, counts; per class of the given label if ``labels``."""
    p = _np(poison_mask, bool)
    cover = np.zeros_like(p) if cover_mask is None else _np(cover_mask, bool) & ~p
    out = rates(suspected, p, cover)
    recall, precision = out["recall"], out["precision"]
    if recall is None or precision is None:
        out["f1"] = None
    else:
        out["f1"] = 2 * recall * precision / (recall + precision) if recall + precision else 0.0
    out["auroc"] = auroc(_np(scores)[~cover], p[~cover]) if scores is not None else None
    if labels is not None:
        y, f = _np(labels), _np(suspected, bool)
        out["per_class"] = []
        for c in range(int(y.max()) + 1 if len(y) else 0):
            m = y == c
            r = rates(f[m], p[m], cover[m])
            out["per_class"].append({"class": classes[c] if classes else str(c), "label": c, "n": r["n"],
                                     "n_poison": r["n_poison"], "n_flagged": r["n_flagged"], "recall": r["recall"],
                                     "fpr": r["fpr"], "precision": r["precision"]})
    return out
