"""Detection metrics against ground truth (SPEC §6). Evaluation only: never called inside a defense.

Poisoned samples are the positives; cover samples are excluded from recall/FPR/precision (they carry a
trigger variant with their true label) and reported separately.
"""
from __future__ import annotations

from typing import Sequence

import torch


def _pct(num: float, den: float) -> float | None:
    return 100.0 * num / den if den else None


def auroc(scores: torch.Tensor, positive: torch.Tensor) -> float | None:
    """Area under the ROC curve of ``scores`` (higher = positive), ties counted half; None if one class."""
    pos, neg = int(positive.sum()), int((~positive).sum())
    if pos == 0 or neg == 0:
        return None
    ranks = torch.empty(len(scores), dtype=torch.float64)
    s = scores.double()
    order = torch.argsort(s)
    sorted_s = s[order]
    # average ranks of ties
    _, inv, counts = torch.unique_consecutive(sorted_s, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    avg = ends - (counts.double() - 1) / 2
    ranks[order] = avg[inv]
    return float((ranks[positive].sum() - pos * (pos + 1) / 2) / (pos * neg))


def detection_metrics(
    suspected: torch.Tensor,
    poison_mask: torch.Tensor,
    cover_mask: torch.Tensor | None = None,
    scores: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    classes: Sequence[str] | None = None,
) -> dict:
    """Recall/TPR, FPR, precision, F1 (percent), AUROC, counts; per class of the given label if ``labels``."""
    suspected, poison = suspected.bool(), poison_mask.bool()
    cover = torch.zeros_like(poison) if cover_mask is None else cover_mask.bool()
    clean = ~poison & ~cover
    tp = int((suspected & poison).sum())
    fp = int((suspected & clean).sum())
    recall = _pct(tp, int(poison.sum()))
    precision = _pct(tp, tp + fp)
    f1 = (2 * recall * precision / (recall + precision)) if recall and precision else (0.0 if recall is not None and precision is not None else None)
    out = {
        "n": len(suspected), "n_poison": int(poison.sum()), "n_cover": int(cover.sum()),
        "n_flagged": int(suspected.sum()), "tp": tp, "fp": fp,
        "recall": recall, "fpr": _pct(fp, int(clean.sum())), "precision": precision, "f1": f1,
        "cover_flagged": _pct(int((suspected & cover).sum()), int(cover.sum())),
        "auroc": auroc(scores[~cover], poison[~cover]) if scores is not None else None,
    }
    if labels is not None:
        per = []
        for c in range(int(labels.max()) + 1 if len(labels) else 0):
            m = labels == c
            cp, cc = poison & m, clean & m
            ctp, cfp = int((suspected & cp).sum()), int((suspected & cc).sum())
            per.append({
                "class": classes[c] if classes else str(c), "label": c, "n": int(m.sum()),
                "n_poison": int(cp.sum()), "n_flagged": int((suspected & m).sum()),
                "recall": _pct(ctp, int(cp.sum())), "fpr": _pct(cfp, int(cc.sum())), "precision": _pct(ctp, ctp + cfp),
            })
        out["per_class"] = per
    return out
