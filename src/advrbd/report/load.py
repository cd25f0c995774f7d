"""Read a run directory (summary.json, samples.csv, evaluation.json, suspicious.npz) or a bench directory.

Only ``summary.json`` (run) or ``results.json`` (bench) is required. An optional piece that is missing
or unreadable is recorded in ``RunData.missing`` (piece → reason) so that its report section can say
"not available" instead of the whole report failing.
"""
from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadInputError

log = logging.getLogger(__name__)

SAMPLE_COLUMNS = ("index", "path", "given_label", "score", "verdict", "suggested_label")


@dataclass
class Samples:
    """Columns of samples.csv. Labels are ints (-1 where unknown); ``flagged`` True = verdict poisoned;
    ``poison`` / ``cover`` / ``true_label`` are ``None`` without ground truth."""

    index: np.ndarray
    path: list[str]
    given: np.ndarray
    score: np.ndarray
    flagged: np.ndarray
    suggested: np.ndarray
    poison: np.ndarray | None = None
    cover: np.ndarray | None = None
    true_label: np.ndarray | None = None
    kl: np.ndarray | None = None  # optional ``consistency_kl``: the raw Eq. 3 KL (low = consistent)

    def __len__(self) -> int:
        return int(self.index.shape[0])


@dataclass
class RunData:
    dir: Path
    summary: dict
    samples: Samples | None = None
    evaluation: dict | None = None
    suspicious: dict[str, np.ndarray] | None = None
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        c = self.summary.get("classes")
        return [str(x) for x in c] if isinstance(c, list) else []

    def class_name(self, label: Any) -> str:
        try:
            i = int(label)
        except (TypeError, ValueError):
            return str(label)
        names = self.classes
        return names[i] if 0 <= i < len(names) else str(i)


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadInputError(f"{path}: cannot read JSON ({e})") from e


def _label(v: str, lookup: dict[str, int]) -> int:
    v = v.strip()
    try:
        return int(float(v))
    except ValueError:
        return lookup.get(v, -1)


def _flag(v: str) -> bool:
    return v.strip().lower() in ("1", "1.0", "true", "yes", "poisoned")


def _float(v: str) -> float:
    try:
        return float(v)
    except ValueError:
        return math.nan


def read_samples(path: Path, classes: list[str]) -> Samples:
    lookup = {c: i for i, c in enumerate(classes)}
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        cols = set(reader.fieldnames or ())
        lacking = [c for c in ("given_label", "score", "verdict") if c not in cols]
        if lacking:
            raise BadInputError(f"{path}: missing column(s) {', '.join(lacking)}")
        rows = list(reader)
    get = lambda r, k: r.get(k) or ""  # noqa: E731 - short rows give None
    gt = "true_poison" in cols
    return Samples(
        index=np.array([_label(get(r, "index"), {}) if get(r, "index") else i for i, r in enumerate(rows)], np.int64),
        path=[get(r, "path") for r in rows],
        given=np.array([_label(get(r, "given_label"), lookup) for r in rows], np.int64),
        score=np.array([_float(get(r, "score")) for r in rows], np.float64),
        flagged=np.array([_flag(get(r, "verdict")) for r in rows], bool),
        suggested=np.array([_label(get(r, "suggested_label"), lookup) if get(r, "suggested_label") else -1
                            for r in rows], np.int64),
        poison=np.array([_flag(get(r, "true_poison")) for r in rows], bool) if gt else None,
        cover=np.array([_flag(get(r, "true_cover")) for r in rows], bool) if "true_cover" in cols else None,
        true_label=(np.array([_label(get(r, "true_label"), lookup) for r in rows], np.int64)
                    if "true_label" in cols else None),
        kl=next((np.array([_float(get(r, c)) for r in rows]) for c in ("consistency", "consistency_kl") if c in cols),
                None),
    )


def read_suspicious(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        out = {k: np.asarray(z[k]) for k in z.files}
    for prefix in ("most", "least"):
        imgs = out.get(f"{prefix}_images")
        if imgs is None:
            continue
        if imgs.ndim == 3:  # k×H×W grayscale
            imgs = imgs[..., None]
        if imgs.ndim != 4 or imgs.shape[-1] not in (1, 3, 4):
            raise BadInputError(f"{path}: {prefix}_images must be k×H×W×C, got shape {imgs.shape}")
        if imgs.dtype != np.uint8:
            scale = 255.0 if imgs.size and float(np.nanmax(imgs)) <= 1.0 else 1.0
            imgs = np.clip(np.nan_to_num(imgs.astype(np.float64) * scale), 0, 255).astype(np.uint8)
        out[f"{prefix}_images"] = imgs
    return out


def load_run(run_dir: str | Path) -> RunData:
    d = Path(run_dir)
    summary = _read_json(d / "summary.json")
    if not isinstance(summary, dict):
        raise BadInputError(f"{d / 'summary.json'}: expected a JSON object, got {type(summary).__name__}")
    run = RunData(d, summary)
    pieces = (("samples", "samples.csv", lambda p: read_samples(p, run.classes)),
              ("evaluation", "evaluation.json", _read_json),
              ("suspicious", "suspicious.npz", read_suspicious))
    for attr, name, reader in pieces:
        p = d / name
        if not p.is_file():
            run.missing[attr] = f"{name} not found"
            continue
        try:
            value = reader(p)
            if attr == "evaluation" and not isinstance(value, dict):
                raise BadInputError(f"{p}: expected a JSON object")
            setattr(run, attr, value)
        except Exception as e:  # noqa: BLE001 - an unreadable optional piece must not sink the report
            log.warning("skipping %s: %s", p, e)
            run.missing[attr] = f"could not read {name}: {e}"
    return run


def load_bench(bench_dir: str | Path) -> list[dict]:
    p = Path(bench_dir) / "results.json"
    data = _read_json(p)
    if isinstance(data, dict):  # tolerate {"cells": [...]} / {"results": [...]}
        data = data.get("cells", data.get("results"))
    if not isinstance(data, list):
        raise BadInputError(f"{p}: expected a JSON list of result cells")
    return [c for c in data if isinstance(c, dict)]
