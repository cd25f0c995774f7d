"""Writing a defense run directory (SPEC §1): model.safetensors, samples.csv, summary.json,
evaluation.json (only with ground truth), suspicious.npz (gallery images for the report).
Every file is written atomically; nothing of the user's input is modified."""
from __future__ import annotations

import csv
import io as _io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .io import atomic_write_bytes, atomic_write_text, save_state_dict, write_json
from .api import actions
from .types import DefenseResult, ImageData, PoisonedDataset


def samples_csv(data: ImageData, result: DefenseResult, poisoned: PoisonedDataset | None = None) -> str:
    """One row per training sample, most suspicious first: index, path, given label, score, verdict
    (poisoned / review / clean), suggested label, action, then the method's own per-sample columns (AdvrBD's
    table: why each sample got its verdict and action) (+ true_label, true_poison, true_cover when ground
    truth is known, for evaluation only)."""
    n = len(data)
    scores = result.scores if result.scores is not None else torch.full((n,), float("nan"))
    suspected = result.suspected if result.suspected is not None else torch.zeros(n, dtype=torch.bool)
    relabels = result.relabels if result.relabels is not None else data.labels
    table = dict(result.info.get("table") or {})
    review = table.pop("review", [False] * n)
    acts = table.pop("action", None) or actions(suspected, data.labels, relabels)
    for col in ("suspected", "label"):  # already the verdict and suggested_label columns
        table.pop(col, None)
    if not table and result.info.get("consistency_scores") is not None:
        table = {"consistency": result.info["consistency_scores"].tolist()}
    cols = ["index", "path", "given_label", "score", "verdict", "suggested_label", "action", *table]
    if poisoned is not None:
        cols += ["true_label", "true_poison", "true_cover"]
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    paths = data.paths or ("",) * n
    given, sc, sus, rel = data.labels.tolist(), scores.tolist(), suspected.tolist(), relabels.tolist()
    if poisoned is not None:
        tl, tp, tc = poisoned.true_labels.tolist(), poisoned.poison_mask.int().tolist(), poisoned.cover_mask.int().tolist()
    order = torch.argsort(scores.nan_to_num(float("-inf")), descending=True, stable=True).tolist()
    for i in order:
        verdict = "poisoned" if sus[i] else "review" if review[i] else "clean"
        row = [int(data.index[i]), paths[i], given[i], f"{sc[i]:.6g}", verdict, rel[i], acts[i]]
        row += [_cell(v[i]) for v in table.values()]
        if poisoned is not None:
            row += [tl[i], tp[i], tc[i]]
        w.writerow(row)
    return buf.getvalue()


def _cell(v: Any) -> Any:
    if isinstance(v, bool):
        return int(v)
    return f"{v:.6g}" if isinstance(v, float) else v


def suspicious_npz(data: ImageData, result: DefenseResult, k: int = 16,
                   poisoned: PoisonedDataset | None = None) -> bytes | None:
    """The k most and least suspicious training images with labels and scores (and, with ground truth,
    whether each is a known poison)."""
    if result.scores is None:
        return None
    order = torch.argsort(result.scores, descending=True, stable=True)
    rel = result.relabels if result.relabels is not None else data.labels
    arrays: dict[str, np.ndarray] = {}
    for name, idx in (("most", order[:k]), ("least", order.flip(0)[:k])):
        arrays[f"{name}_images"] = data.images[idx].numpy()
        arrays[f"{name}_index"] = data.index[idx].numpy()
        arrays[f"{name}_given"] = data.labels[idx].numpy()
        arrays[f"{name}_suggested"] = rel[idx].numpy()
        arrays[f"{name}_score"] = result.scores[idx].float().numpy()
        if poisoned is not None:
            arrays[f"{name}_poison"] = poisoned.poison_mask[idx].numpy()
    buf = _io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def write_run(out: Path, data: ImageData, result: DefenseResult, summary: dict[str, Any],
              evaluation: dict[str, Any] | None = None, poisoned: PoisonedDataset | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if result.model is not None:
        save_state_dict(out / "model.safetensors", result.model.state_dict())
    atomic_write_text(out / "samples.csv", samples_csv(data, result, poisoned))
    blob = suspicious_npz(data, result, poisoned=poisoned)
    if blob is not None:
        atomic_write_bytes(out / "suspicious.npz", blob)
    write_json(out / "summary.json", summary)
    if evaluation is not None:
        write_json(out / "evaluation.json", evaluation)
