"""Sections of a run report (``advrbd defend`` output): summary, scores, rounds, detection, per-class,
gallery, model metrics. Each builder takes a ``RunData`` and returns a ``Section``; missing inputs give a
"not available" paragraph instead of an error.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import plots
from .detection import compute_detection, per_class_rows, target_class
from .load import RunData
from .render import Fig, Para, Row, Section, not_available
from .tables import DASH, Table, fmt
from .verdict_section import settings_section, verdict_section


def _s(v: Any) -> str:
    return DASH if v is None else f"{v:.6g}" if isinstance(v, float) else str(v)


def _duration(sec: Any) -> str:
    try:
        v = float(sec)
    except (TypeError, ValueError):
        return DASH
    return f"{v:.1f} s" + (f" ({v / 60:.1f} min)" if v >= 120 else "")


def summary_section(run: RunData) -> Section:
    s, ev = run.summary, run.evaluation or {}
    counts = s.get("counts") if isinstance(s.get("counts"), dict) else {}
    n, nf = counts.get("n_train"), counts.get("n_flagged")
    flagged = _s(nf) + (f" ({nf / n:.2%} of the training set)" if isinstance(nf, int) and isinstance(n, int) and n
                        else "")
    rows = [["run directory", str(run.dir)], ["kind", _s(s.get("kind"))], ["data", _s(s.get("data"))],
            ["defense", _s(s.get("defense"))], ["model", _s(s.get("model"))], ["device", _s(s.get("device"))],
            ["attack (ground truth)", _s(s.get("attack"))],
            ["training samples", _s(n)], ["flagged as poisoned", flagged], ["classes", _s(counts.get("n_classes"))],
            ["score threshold", _s(s.get("threshold"))], ["total time", _duration(s.get("total_seconds"))]]
    if s.get("torch_version") or s.get("advrbd_version"):
        rows.append(["versions", f"torch {_s(s.get('torch_version'))}, advrbd {_s(s.get('advrbd_version'))}"])
    if ev:
        rows.append(["ACC / ASR of the final model", f"{fmt(ev.get('acc'))} % / {fmt(ev.get('asr'))} %"])
        rows.append(["detection recall / FPR", f"{fmt(ev.get('recall'))} % / {fmt(ev.get('fpr'))} %"])
    blocks: list = [Table(["item", "value"], rows)]
    stages = s.get("stage_seconds") if isinstance(s.get("stage_seconds"), dict) else {}
    if stages:
        total = s.get("total_seconds") or sum(v for v in stages.values() if isinstance(v, (int, float))) or None
        rows = [[str(k), fmt(v, 1), f"{v / total:.1%}" if isinstance(v, (int, float)) and total else DASH]
                for k, v in stages.items()]
        blocks.append(Table(["stage", "seconds", "share"], rows + [["total", fmt(total, 1), ""]],
                            "Wall time per stage."))
    else:
        blocks.append(not_available("no stage timings recorded in summary.json"))
    return Section("summary", "Summary", blocks)


def scores_section(run: RunData) -> Section:
    sm = run.samples
    if sm is None:
        return Section("scores", "Score distribution", [not_available(run.missing.get("samples", "no samples"))])
    gt = sm.poison is not None
    thr = run.summary.get("threshold")
    split = dict(poison=sm.poison, cover=sm.cover, flagged=None if gt else sm.flagged)
    fig = plots.score_histogram(sm.score, threshold=thr if isinstance(thr, (int, float)) else None, **split)
    how = "ground truth (poisoned / cover / clean)" if gt else "the defense's verdict (no ground truth available)"
    cap = f"The defense's suspicion score per training sample (higher = more suspicious), split by {how}."
    figs = [Fig("scores", fig, cap)]
    if sm.kl is not None and np.isfinite(sm.kl).any():
        figs.append(Fig("consistency", plots.score_histogram(
            sm.kl, **split, xlabel="KL(p(x) ‖ p(x + m⊙δ)) (lower = more consistent = more suspicious)",
            title="Perturbation-consistency score (paper Fig. 5)"),
            "Raw perturbation-consistency KL of Eq. 3 (paper Fig. 5): poisoned samples barely change."))
    if gt:
        cover = sm.cover if sm.cover is not None else np.zeros(len(sm), bool)
        groups = [("poisoned", sm.poison), ("cover", cover & ~sm.poison), ("clean", ~sm.poison & ~cover)]
    else:
        groups = [("flagged", sm.flagged), ("kept", ~sm.flagged)]
    rows = []
    for name, m in groups + [("all", np.ones(len(sm), bool))]:
        v = sm.score[m & np.isfinite(sm.score)]
        if not m.any() and name == "cover":
            continue
        stats = [fmt(f(v), 4) if v.size else DASH for f in (np.min, np.median, np.mean, np.max)]
        rows.append([name, str(int(m.sum())), *stats, str(int((sm.flagged & m).sum()))])
    return Section("scores", "Score distribution", [
        figs[0] if len(figs) == 1 else Row(figs),
        Table(["group", "n", "min", "median", "mean", "max", "flagged"], rows,
              "Suspicion score (higher = more suspicious).")])


def rounds_section(run: RunData) -> Section:
    hist = [h for h in (run.summary.get("history") or []) if isinstance(h, dict)]
    if not hist:
        return Section("rounds", "Enhancement rounds",
                       [not_available("no backdoor-enhancement history in summary.json")])
    blocks: list = [Fig("rounds", plots.rounds_plot(hist),
                        "Backdoor-enhancement rounds (paper Fig. 6): ACC should fall and ASR rise as D_c grows.")]
    if all(h.get("acc") is None and h.get("asr") is None for h in hist):
        blocks.append(Para("ACC and ASR per round are measured only when the data carries ground truth.", "na"))
    blocks.append(Table(["round", "clean pool |D_c|", "ACC %", "ASR %"],
                        [[_s(h.get("round")), _s(h.get("n_clean_pool")), fmt(h.get("acc")), fmt(h.get("asr"))]
                         for h in hist]))
    return Section("rounds", "Enhancement rounds", blocks)


def detection_section(run: RunData) -> Section:
    sm, ev = run.samples, run.evaluation or {}
    gt = sm is not None and sm.poison is not None
    if not gt and not ev:
        return Section("detection", "Detection", [not_available(
            "needs ground truth (samples.csv with true_poison, or evaluation.json)")])
    m = compute_detection(sm) if gt else {}
    for k in ("recall", "fpr", "precision", "auroc", "n_flagged", "n_poison", "n_cover", "cover_flagged"):
        if ev.get(k) is not None:
            m[k] = ev[k]
    p, r = m.get("precision"), m.get("recall")
    f1 = 2 * p * r / (p + r) if isinstance(p, (int, float)) and isinstance(r, (int, float)) and p + r else ev.get("f1")
    rows = [["recall (poisoned flagged) %", fmt(r)], ["FPR (clean flagged) %", fmt(m.get("fpr"))],
            ["precision %", fmt(p)], ["F1 %", fmt(f1)], ["AUROC of the score", fmt(m.get("auroc"), 4)],
            ["flagged", _s(m.get("n_flagged"))], ["true poisons", _s(m.get("n_poison"))],
            ["cover samples", _s(m.get("n_cover"))], ["cover samples flagged %", fmt(m.get("cover_flagged"))]]
    blocks: list = [Table(["metric", "value"], rows, "Cover samples (trigger variant, correct label) are left "
                          "out of recall, FPR, precision and AUROC and counted separately.")]
    keep = ~sm.cover if gt and sm.cover is not None else np.ones(len(sm) if sm is not None else 0, bool)
    if gt and sm.poison[keep].any() and not sm.poison[keep].all():
        sc, po, fl = sm.score[keep], sm.poison[keep], sm.flagged[keep]
        blocks.append(Row([Fig("roc", plots.roc_plot(sc, po, fl),
                               "ROC: poisoned vs clean (cover samples left out); the star is the defense's verdict."),
                           Fig("pr", plots.pr_plot(sc, po, fl),
                               "Precision–recall of the score; the star is the defense's verdict.")]))
    else:
        blocks.append(not_available("ROC / precision–recall curves need per-sample scores with both poisoned "
                                    "and non-poisoned samples (samples.csv with true_poison)"))
    return Section("detection", "Detection", blocks)


def per_class_section(run: RunData) -> Section:
    rows = per_class_rows(run)
    if not rows:
        return Section("per-class", "Per-class", [not_available(run.missing.get("samples", "no per-class data"))])
    target, how = target_class(run, rows)
    has_gt = any(r["n_poison"] is not None for r in rows)
    mark = " (likely target)" if "likely" in how else " (target)"
    names = [r["name"] + (mark if r["label"] == target else "") for r in rows]
    if has_gt:
        head = ["class", "label", "n", "true poisons", "flagged", "flagged not poisoned", "recall %", "FPR %",
                "precision %"]
        body = [[nm, _s(r["label"]), _s(r["n"]), _s(r["n_poison"]), _s(r["n_flagged"]), _s(r["n_false"]),
                 fmt(r["recall"]), fmt(r["fpr"]), fmt(r["precision"])] for nm, r in zip(names, rows)]
    else:
        head = ["class", "label", "n", "flagged", "flagged %"]
        body = [[nm, _s(r["label"]), _s(r["n"]), _s(r["n_flagged"]),
                 fmt(100 * r["n_flagged"] / r["n"]) if r["n"] else DASH] for nm, r in zip(names, rows)]
    hl = {i for i, r in enumerate(rows) if r["label"] == target}
    blocks: list = []
    if target is not None:
        tr = rows[min(hl)] if hl else {}
        extra = (f" Here {tr['n_false']} samples of it were flagged without being poisoned (FPR "
                 f"{fmt(tr['fpr'])} %)." if tr.get("n_false") is not None else "")
        blocks.append(Para(f"Highlighted: {run.class_name(target)} — {how}. Known weak spot: clean samples of the "
                           f"target class are classified 'correctly' by the enhanced model and so risk being "
                           f"flagged as poisoned.{extra}", "note"))
    fig = plots.per_class_plot([r["name"] for r in rows], [r["n_flagged"] for r in rows],
                               [r["n_poison"] or 0 for r in rows] if has_gt else None,
                               [r["n_false"] or 0 for r in rows] if has_gt else None,
                               highlight=min(hl) if hl else None, highlight_label=how)
    blocks += [Fig("per_class", fig, "Flagged samples and true poisons per class (by given label)."),
               Table(head, body, "Per class, by given label.", highlight=hl)]
    return Section("per-class", "Per-class", blocks)


def _caption(run: RunData, z: dict, prefix: str, i: int) -> str:
    def get(key: str) -> Any:
        a = z.get(f"{prefix}_{key}")
        return a[i] if a is not None and i < len(a) else None

    short = lambda lab: DASH if lab is None else run.class_name(lab)[:10]  # noqa: E731
    idx, score = get("index"), get("score")
    return (f"#{idx if idx is not None else i}  s={fmt(score, 3) if score is not None else DASH}\n"
            f"{short(get('given'))} → {short(get('suggested'))}")


def gallery_section(run: RunData) -> Section:
    z, blocks = run.suspicious, []
    if z:
        for prefix, label in (("most", "Most suspicious"), ("least", "Least suspicious")):
            imgs = z.get(f"{prefix}_images")
            if imgs is None or not len(imgs):
                continue
            caps = [_caption(run, z, prefix, i) for i in range(len(imgs))]
            marks = z.get(f"{prefix}_poison")
            blocks.append(Fig(f"gallery_{prefix}", plots.gallery_plot(imgs, caps, f"{label} training samples",
                                                                      marks=marks),
                              f"{label} training samples: given label → suggested label."))
    if not blocks:
        blocks.append(not_available(run.missing.get("suspicious", "suspicious.npz holds no images")))
    sm = run.samples
    if sm is not None and len(sm):
        order = np.argsort(-np.nan_to_num(sm.score, nan=-np.inf), kind="stable")[:10]
        gt = sm.poison is not None
        head = ["index", "path", "given", "suggested", "score", "verdict"] + (["true poison"] if gt else [])
        rows = [[str(sm.index[i]), sm.path[i] or DASH, run.class_name(sm.given[i]),
                 run.class_name(sm.suggested[i]) if sm.suggested[i] >= 0 else DASH, fmt(sm.score[i], 4),
                 "poisoned" if sm.flagged[i] else "clean"] + (["yes" if sm.poison[i] else "no"] if gt else [])
                for i in order]
        blocks.append(Table(head, rows, "The ten highest scores in samples.csv."))
    return Section("gallery", "Gallery", blocks)


def metrics_section(run: RunData) -> Section:
    ev = run.evaluation
    if not ev:
        return Section("metrics", "Model metrics", [not_available(
            run.missing.get("evaluation", "no evaluation") + " — evaluation needs the attack's ground truth")])
    nd = ev.get("no_defense") if isinstance(ev.get("no_defense"), dict) else None
    rows = ([["no defense", fmt(nd.get("acc")), fmt(nd.get("asr"))]] if nd else []) + [
        [f"{_s(run.summary.get('defense'))} (this run)", fmt(ev.get("acc")), fmt(ev.get("asr"))]]
    if nd and isinstance(nd.get("acc"), (int, float)) and isinstance(ev.get("acc"), (int, float)):
        rows.append(["change", f"{ev['acc'] - nd['acc']:+.2f}",
                     f"{ev['asr'] - nd['asr']:+.2f}" if isinstance(ev.get("asr"), (int, float))
                     and isinstance(nd.get("asr"), (int, float)) else DASH])
    blocks: list = [Table(["model", "ACC %", "ASR %"], rows, f"ACC on {_s(ev.get('n_test'))} clean test images; "
                          f"ASR on {_s(ev.get('n_asr'))} triggered non-target test images.")]
    q = ev.get("quant") if isinstance(ev.get("quant"), dict) else None
    if q:
        base = (q.get("fp32") or {}).get("acc")
        keys = [k for k in ("fp32", "int8", "int4") if k in q] + [k for k in q if k not in ("fp32", "int8", "int4")]
        qrows = [[k.upper(), fmt((q[k] or {}).get("acc")), fmt((q[k] or {}).get("asr")),
                  f"{q[k]['acc'] - base:+.2f}" if isinstance(base, (int, float)) and isinstance(
                      (q[k] or {}).get("acc"), (int, float)) else DASH] for k in keys]
        blocks.append(Table(["weights", "ACC %", "ASR %", "ΔACC vs FP32"], qrows,
                            "Simulated quantization (PyTorch, weights rounded per channel, float activations); "
                            "the deployed ONNX Runtime artefacts: advrbd evaluate --precision fp32,int8,int4."))
    else:
        blocks.append(not_available("no quantized evaluation in evaluation.json"))
    return Section("metrics", "Model metrics", blocks)


BUILDERS = (verdict_section, summary_section, scores_section, rounds_section, detection_section, per_class_section,
            gallery_section, metrics_section, settings_section)
