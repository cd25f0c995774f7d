"""One validation table from several bench folders: a row per attack cell with no defense's and AdvrBD's
ACC / ASR, the clean-model ASR floor, detection, cost, and whether the cell chose settings (tuning) or not
(validation); then the issue's criteria counted over the validation cells.

    python benchmarks/validation_table.py OUT.md DIR [DIR ...]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def rows(dirs: list[Path]) -> list[dict]:
    out = []
    for d in dirs:
        cells = json.loads((d / "results.json").read_text())
        key = lambda c: (c["dataset"], c["attack"], c["poison_rate"], c["target"], c["seed"])  # noqa: E731
        base = {key(c): c for c in cells if c["defense"] == "none"}
        clean = {(c["dataset"], c["seed"]): c for c in cells if c["attack"] == "none" and c["defense"] == "none"}
        for c in cells:
            if c["defense"] != "advrbd":
                continue
            b = base.get(key(c), {})
            ref = clean.get((c["dataset"], c["seed"]), {})
            out.append({**c, "none_acc": b.get("acc"), "none_asr": b.get("asr"), "clean_acc": ref.get("acc"),
                        "folder": d.name, "ratio": c["seconds"] / c["standard_train_seconds"]})
    return out


def f(x, d=2):
    return "—" if x is None else f"{x:.{d}f}"


def main() -> None:
    out, dirs = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
    rs = rows(dirs)
    lines = ["| folder | attack | target | rate | seed | role | none ACC / ASR | AdvrBD ACC / ASR | floor | clean ACC | "
             "recall % | FPR % | flagged | s | × std |", "|" + "---|" * 15]
    for r in rs:
        lines.append(f"| {r['folder']} | {r['attack']} | {r['target'] if r['target'] is not None else '—'} | "
                     f"{r['poison_rate']:g} | {r['seed']} | {r.get('role') or '—'} | {f(r['none_acc'])} / {f(r['none_asr'])} | "
                     f"{f(r['acc'])} / {f(r['asr'])} | {f(r.get('clean_model_asr'))} | {f(r['clean_acc'])} | "
                     f"{f(r.get('recall'), 1)} | {f(r.get('fpr'), 1)} | {r.get('n_flagged')} | {r['seconds']:.0f} | "
                     f"{r['ratio']:.2f} |")
    val = [r for r in rs if r.get("role") == "validation" and r["attack"] != "none"]
    crit = []
    if val:
        n = len(val)
        never = sum(r["asr"] <= r["none_asr"] + 0.5 for r in val if r["none_asr"] is not None)
        floor = sum(r["asr"] <= r["clean_model_asr"] + 0.5 for r in val if r.get("clean_model_asr") is not None)
        acc = sum(r["acc"] >= r["clean_acc"] - 1.5 for r in val if r["clean_acc"] is not None)
        fpr5 = sum(r["fpr"] <= 5 for r in val if r.get("fpr") is not None)
        fpr2 = sum(r["fpr"] <= 2 for r in val if r.get("fpr") is not None)
        learned = [r for r in val if (r["none_asr"] or 0) >= 50]
        rec = sum((r.get("recall") or 0) >= 95 for r in learned)
        cost = sum(r["ratio"] <= 2 for r in val)
        crit = ["", f"Validation cells: {n}.", "",
                f"- ASR never above no defense (+0.5 noise): {never} of {n}",
                f"- ASR within 0.5 point of the floor: {floor} of {n}",
                f"- ACC within 1.5 points of clean training: {acc} of {n}",
                f"- FPR ≤ 5%: {fpr5} of {n}; ≤ 2%: {fpr2} of {n}",
                f"- recall ≥ 95% where the attack was learned (no-defense ASR ≥ 50%): {rec} of {len(learned)}",
                f"- cost ≤ 2× one standard training: {cost} of {n}"]
    out.write_text("\n".join(lines + crit) + "\n")
    print("\n".join(lines + crit))


if __name__ == "__main__":
    main()
