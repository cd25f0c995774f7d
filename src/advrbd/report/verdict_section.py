"""The report's first screen: the verdict in words, the key figures, and the most suspicious images
(known poisons marked when ground truth exists). Settings go to the last section (``settings_section``)."""
from __future__ import annotations

from typing import Any

import numpy as np

from . import plots
from .load import RunData
from .render import Fig, Para, Section
from .tables import DASH, Table, fmt


def _fallback_sentence(run: RunData) -> str:
    """For runs written before summary.json had a verdict: counts only."""
    sm = run.samples
    if sm is None:
        return "No verdict recorded (summary.json has none and samples.csv is missing)."
    nf, n = int(sm.flagged.sum()), len(sm)
    return f"{nf:,} of {n:,} training samples ({100 * nf / max(1, n):.1f}%) flagged as poisoned."


def _flatten(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if not isinstance(d, dict):
        return [(prefix, d)]
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out += _flatten(v, key) if isinstance(v, dict) and v else [(key, v)]
    return out


def verdict_section(run: RunData) -> Section:
    s, ev = run.summary, run.evaluation or {}
    v = s.get("verdict") if isinstance(s.get("verdict"), dict) else {}
    sentence = v.get("sentence") or _fallback_sentence(run)
    blocks: list = [Para(sentence, "verdict")]
    rows = []
    setup = s.get("setup") if isinstance(s.get("setup"), dict) else {}
    if setup.get("line"):
        rows.append(["run", setup["line"]])
    if v.get("target_name") is not None:
        rows.append(["suspected target class", f"{v['target_name']} (label {v.get('target_class')})"])
    if v.get("evidence"):
        rows.append(["evidence", v["evidence"]])
    nd = ev.get("no_defense") if isinstance(ev.get("no_defense"), dict) else {}
    if ev.get("acc") is not None:
        asr = f", ASR {fmt(ev.get('asr'))}%" if ev.get("asr") is not None else ""
        base = (f" (no defense: ACC {fmt(nd.get('acc'))}%" + (f", ASR {fmt(nd.get('asr'))}%" if nd.get("asr")
                is not None else "") + ")") if nd else ""
        rows.append(["final model", f"ACC {fmt(ev['acc'])}%{asr}{base}"])
    elif v.get("final_acc") is not None:
        rows.append(["final model", f"test accuracy {fmt(v['final_acc'])}%"])
    if ev.get("recall") is not None:
        rows.append(["detection (ground truth)", f"recall {fmt(ev.get('recall'))}%, FPR {fmt(ev.get('fpr'))}%, "
                                                 f"AUROC of the score {fmt(ev.get('auroc'), 3)}"])
    if rows:
        blocks.append(Table(["", ""], rows))
    z = run.suspicious or {}
    imgs = z.get("most_images")
    if imgs is not None and len(imgs):
        poison = z.get("most_poison")
        caps = []
        for i in range(len(imgs)):
            given, sug = z.get("most_given"), z.get("most_suggested")
            mark = "POISON " if poison is not None and bool(poison[i]) else ""
            g = run.class_name(given[i])[:8] if given is not None else DASH
            sg = run.class_name(sug[i])[:8] if sug is not None else DASH
            caps.append(f"{mark}#{z['most_index'][i] if 'most_index' in z else i}\n{g} → {sg}")
        known = (f"; {int(np.sum(poison))} of these {len(imgs)} are known poisons (marked POISON, red frame)"
                 if poison is not None else "")
        fig = plots.gallery_plot(imgs, caps, "Most suspicious training samples", ncols=16,
                                 marks=None if poison is None else np.asarray(poison, bool),
                                 ylabel="")
        blocks.append(Fig("gallery_top", fig, f"The {len(imgs)} highest scores, most suspicious first: "
                                              f"index, given label → suggested label{known}."))
    return Section("verdict", "Verdict", blocks)


def settings_section(run: RunData) -> Section:
    s = run.summary
    blocks: list = []
    settings = _flatten(s.get("settings")) if isinstance(s.get("settings"), dict) else []
    if settings:
        blocks.append(Table(["setting", "value"], [[k, _fmt(v)] for k, v in settings],
                            "Every setting used (summary.json)."))
    recipe = _flatten(s.get("recipe")) if isinstance(s.get("recipe"), dict) else []
    if recipe:
        blocks.append(Table(["training recipe", "value"], [[k, _fmt(v)] for k, v in recipe], "Training recipe."))
    setup = _flatten(s.get("setup")) if isinstance(s.get("setup"), dict) else []
    if setup:
        blocks.append(Table(["set-up", "value"], [[k, _fmt(v)] for k, v in setup if k != "line"],
                            "Model, recipe and precision: how they were chosen."))
    if not blocks:
        blocks.append(Para("No settings recorded in summary.json.", "na"))
    return Section("settings", "Settings", blocks)


def _fmt(v: Any) -> str:
    return DASH if v is None else f"{v:.6g}" if isinstance(v, float) else str(v)
