"""The run's verdict in words (the first line of the report and of ``advrbd defend``'s output).

A backdoor is suspected when the flagged samples concentrate in one given label: an all-to-one backdoor
relabels its poisons to the target class, while the false positives of a clean set spread over the
classes (digits, 0% poison: flagged samples in 8 of 10 classes). The rule is a reading aid, not a test:
the per-sample verdicts and scores are the result.
"""
from __future__ import annotations

from typing import Any

import torch

from .types import DefenseResult, ImageData

MIN_FLAGGED = 5  # fewer flagged samples than this is no evidence of a backdoor
MIN_SHARE = 0.5  # the target class holds at least half of the flagged samples ...
MIN_RATIO = 3.0  # ... and is flagged at least 3x as often as the median other class


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def run_verdict(train: ImageData, result: DefenseResult, evaluation: dict | None = None,
                final: dict | None = None) -> dict[str, Any]:
    """{"backdoor_suspected", "target_class", "target_name", "n_flagged", "evidence", "sentence", ...}."""
    n, k = len(train), train.num_classes
    flagged = result.suspected if result.suspected is not None else torch.zeros(n, dtype=torch.bool)
    nf = int(flagged.sum())
    per_class = torch.bincount(train.labels[flagged], minlength=k).double()
    sizes = torch.bincount(train.labels, minlength=k).double().clamp_min(1)
    rates = per_class / sizes
    c = int(per_class.argmax()) if nf else None
    out: dict[str, Any] = {"n_flagged": nf, "n_train": n, "backdoor_suspected": False, "target_class": None,
                           "target_name": None, "evidence": None}
    parts = []
    info = result.info if isinstance(result.info, dict) else {}
    if info.get("backdoor_classes") is not None:  # the defense decided from its own evidence (AdvrBD's guard)
        classes = [int(c) for c in info["backdoor_classes"]]
        ev = {int(e["class"]): e for e in info.get("evidence") or ()}
        if classes:
            c = classes[0]
            e = ev.get(c, {})
            others = [float(x.get("j_star", 0.0)) for k, x in ev.items() if k != c]
            evidence = (f"a subgroup of {e.get('n_subgroup', '?')} of its samples splits off in the model's features "
                        f"and the model's second choices for them are spread like the other classes, as a "
                        f"dirty-label attacker's source images are (p = {e.get('spread_p', float('nan')):.2g}; natural "
                        f"subgroups crowd onto a few neighbours); J* = {e.get('j_star', float('nan')):.1f}, every "
                        f"other class ≤ {max(others, default=float('nan')):.1f}")
            out.update(backdoor_suspected=True, target_class=c, target_name=train.classes[c], evidence=evidence)
            parts.append(f"Backdoor suspected, targeting class {train.classes[c]!r} (label {c}): {evidence}."
                         + (f" Also suspected: {', '.join(repr(train.classes[k]) for k in classes[1:])}."
                            if len(classes) > 1 else ""))
        else:
            j = [float(x.get("j_star", 0.0)) for x in ev.values()]
            parts.append("No backdoor suspected: no class has a subgroup whose second choices are spread like a "
                         f"dirty-label attack's or that stands apart (largest J* {max(j, default=float('nan')):.1f}); "
                         "the model is the standard training's.")
    elif c is not None:
        share = float(per_class[c]) / nf
        others = torch.cat([rates[:c], rates[c + 1:]])
        med = float(others.median()) if others.numel() else 0.0
        ratio = float(rates[c]) / med if med > 0 else float("inf")
        j = result.info.get("guard_j_star") if isinstance(result.info, dict) else None
        j_txt = ""
        if j is not None and len(j) == k:
            rest = [v for i, v in enumerate(j) if i != c]
            j_txt = (f"; its latent-subgroup statistic J* = {j[c]:.1f}"
                     + (f" (other classes ≤ {max(rest):.1f})" if rest else ""))
        evidence = (f"{int(per_class[c]):,} of the {nf:,} flagged samples ({_pct(share)}) carry its label, "
                    f"{_pct(float(rates[c]))} of that class against a median {_pct(med)} of the others{j_txt}")
        suspected = nf >= MIN_FLAGGED and share >= MIN_SHARE and ratio >= MIN_RATIO
        name = train.classes[c]
        out.update(backdoor_suspected=suspected, evidence=evidence, class_share=share, rate_ratio=ratio)
        if suspected:
            out.update(target_class=c, target_name=name)
            parts.append(f"Backdoor suspected, targeting class {name!r} (label {c}): {evidence}.")
        else:
            spread = int((per_class > 0).sum())
            parts.append(f"No backdoor suspected: the flagged samples are spread over {spread} classes "
                         f"(largest share {_pct(share)}, class {name!r}).")
    else:
        parts.append("No backdoor suspected: no sample was flagged.")
    parts.append(f"{nf:,} of {n:,} training samples ({_pct(nf / max(1, n))}) flagged as poisoned.")
    if info.get("n_review"):
        parts.append(f"{int(info['n_review']):,} more of that class are in the review band (the "
                     "backdoor-enhanced models keep their label; possibly missed poisons).")
    acc = (evaluation or {}).get("acc")
    acc = acc if acc is not None else (final or {}).get("acc")
    nd = ((evaluation or {}).get("no_defense") or {}).get("acc") if evaluation else None
    nd = nd if nd is not None else (final or {}).get("no_defense_acc")
    if acc is not None:
        n_test = (evaluation or {}).get("n_test") or (final or {}).get("n_test")
        parts.append(f"Final model: {acc:.2f}% test accuracy (n={n_test})"
                     + (f", against {nd:.2f}% without defense." if nd is not None else "."))
    elif result.model is None:
        parts.append("No model was trained (flag-only audit).")
    out["final_acc"], out["no_defense_acc"] = acc, nd
    out["sentence"] = " ".join(parts)
    return out
