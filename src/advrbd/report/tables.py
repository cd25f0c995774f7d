"""Bench results → tables (paper Table II shape, detection, seconds), Markdown and CSV.

A *cell* is one dict of ``DIR/results.json`` (SPEC section 11): ``dataset, model, attack, poison_rate,
defense, seed, acc, asr, ...`` with ``None`` where not applicable. ACC, ASR, recall, FPR and precision
are percent; AUROC is in [0, 1]. Cells sharing (dataset, model, attack, poison_rate, defense) but not
the seed are averaged (shown as mean±std). No matplotlib here: the bench runner imports this module.
"""
from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from ..io import atomic_write_text

RESULT_KEYS = (
    "profile", "dataset", "model", "attack", "poison_rate", "target", "defense", "seed",
    "acc", "asr", "n_test", "n_asr", "recall", "fpr", "precision", "auroc", "n_flagged",
    "seconds", "standard_train_seconds", "device", "torch_version", "advrbd_version",
)
# The paper's row order (Table II then Table III); unknown attacks follow in order of appearance.
ATTACK_ORDER = ("none", "badnet", "blend", "sig", "wanet", "physical", "tact", "adaptive_blend", "adaptive_patch")
NO_ATTACK = (None, "none", "clean")
DASH = "—"


@dataclass
class Table:
    """A table of display strings. ``groups``: optional header row of (label, colspan) pairs over ``sub``
    (HTML only; Markdown uses ``headers``). ``highlight``: row indices to emphasise."""

    headers: list[str]
    rows: list[list[str]]
    caption: str = ""
    groups: list[tuple[str, int]] | None = None
    sub: list[str] | None = None
    highlight: set[int] = field(default_factory=set)


def fmt(x: Any, digits: int = 2) -> str:
    """Number → string with ``digits`` decimals; ``None``/NaN → an em dash; ints stay ints."""
    if x is None or isinstance(x, bool):
        return DASH if x is None else str(x)
    if isinstance(x, int):
        return str(x)
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    return DASH if not math.isfinite(v) else f"{v:.{digits}f}"


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _mean_std(values: Iterable[Any]) -> tuple[float | None, float | None, int]:
    vs = [v for v in (_num(x) for x in values) if v is not None]
    if not vs:
        return None, None, 0
    m = sum(vs) / len(vs)
    sd = math.sqrt(sum((v - m) ** 2 for v in vs) / (len(vs) - 1)) if len(vs) > 1 else None
    return m, sd, len(vs)


def fmt_ms(values: Iterable[Any], digits: int = 2) -> str:
    m, sd, _ = _mean_std(values)
    return fmt(m, digits) if sd is None else f"{fmt(m, digits)}±{fmt(sd, digits)}"


def _ordered(values: Iterable[Any], first: Sequence[Any] = (), last: Sequence[Any] = ()) -> list[Any]:
    seen = list(dict.fromkeys(values))
    head = [v for v in first if v in seen]
    tail = [v for v in last if v in seen and v not in head]
    return head + [v for v in seen if v not in head and v not in tail] + tail


def attack_order(cells: Sequence[dict]) -> list[Any]:
    return _ordered((c.get("attack") for c in cells), first=ATTACK_ORDER)


def defense_order(cells: Sequence[dict]) -> list[Any]:
    """No defense first, the oracle next, AdvrBD last (as in the paper's tables)."""
    return _ordered((c.get("defense") for c in cells), first=("none", "oracle"), last=("advrbd",))


def _rate(r: Any) -> str:
    v = _num(r)
    return DASH if v is None else f"{v * 100:g}%"


def group_cells(cells: Sequence[dict]) -> list[tuple[str, list[dict]]]:
    """Split cells by (dataset, model, poison_rate, target) — one Table II block each — with a label. The
    clean row (no attack) joins every block of its dataset and model."""
    groups: dict[tuple, list[dict]] = {}
    clean = [c for c in cells if c.get("attack") in NO_ATTACK]
    for c in cells:
        if c.get("attack") not in NO_ATTACK:
            groups.setdefault((c.get("dataset"), c.get("model"), c.get("poison_rate"), c.get("target")), []).append(c)
    if not groups:
        return [(f"{c.get('dataset')} · {c.get('model')} · no poison", clean)] if clean else []
    return [(f"{d} · {m} · poison rate {_rate(r)}" + (f" · target {t}" if t is not None else ""),
             cs + [c for c in clean if (c.get("dataset"), c.get("model")) == (d, m)])
            for (d, m, r, t), cs in groups.items()]


def _select(cells: Sequence[dict], attack: Any, defense: Any) -> list[dict]:
    return [c for c in cells if c.get("attack") == attack and c.get("defense") == defense]


def aggregate(cells: Sequence[dict], key: str) -> dict[tuple[Any, Any], float | None]:
    """Mean of ``key`` per (attack, defense) over seeds; ``None`` where nothing was measured."""
    out: dict[tuple[Any, Any], float | None] = {}
    for a in attack_order(cells):
        for d in defense_order(cells):
            sel = _select(cells, a, d)
            if sel:
                out[(a, d)] = _mean_std(c.get(key) for c in sel)[0]
    return out


def results_table(cells: Sequence[dict], caption: str = "") -> Table:
    """Paper Table II: attacks as rows, each defense an ACC/ASR column pair, an Average row (over attacks);
    a clean-model ASR column when the cells carry it (bench grids with the `none` row)."""
    attacks, defenses = attack_order(cells), defense_order(cells)
    floor = any(c.get("clean_model_asr") is not None for c in cells)
    lead = ["attack"] + (["clean-model ASR"] if floor else [])
    headers = lead + [f"{d} {m}" for d in defenses for m in ("ACC", "ASR")]
    rows = []
    real = [a for a in attacks if a not in NO_ATTACK]
    floors = {a: _mean_std(c.get("clean_model_asr") for c in cells if c.get("attack") == a)[0] for a in attacks}
    for a in attacks:
        row = [str(a) if a is not None else "none"] + ([fmt(floors[a])] if floor else [])
        for d in defenses:
            sel = _select(cells, a, d)
            row += [fmt_ms(c.get("acc") for c in sel), fmt_ms(c.get("asr") for c in sel)] if sel else [DASH, DASH]
        rows.append(row)
    avg = ["Average"] + ([fmt(_mean_std(floors[a] for a in real)[0])] if floor else [])
    for d in defenses:
        for key in ("acc", "asr"):
            per_attack = [_mean_std(c.get(key) for c in _select(cells, a, d))[0] for a in real]
            avg.append(fmt(_mean_std(per_attack)[0]))
    rows.append(avg)
    return Table(
        headers, rows, (caption or "ACC / ASR in percent (mean±std over seeds); Average over attacks.")
        + (" Clean-model ASR: the attack's test trigger on the model trained without poison (the none row's "
           "standard model), the floor a defense's ASR is judged against." if floor else ""),
        groups=[("", len(lead))] + [(str(d), 2) for d in defenses], sub=lead + ["ACC", "ASR"] * len(defenses),
    )


def _mean(values: Iterable[Any], digits: int = 2) -> str:
    return fmt(_mean_std(values)[0], digits)


def detection_table(cells: Sequence[dict]) -> Table | None:
    """Recall / FPR / precision / AUROC per attack (means over seeds) for defenses that flag samples
    (``None`` if none do). A setting column appears only when the cells span several settings."""
    flagging = [d for d in defense_order(cells) if any(_num(c.get("recall")) is not None for c in cells
                                                         if c.get("defense") == d)]
    if not flagging:
        return None
    groups = group_cells(cells)
    lead = ["setting"] if len(groups) > 1 else []
    rows = []
    for key, group in groups:
        for a in attack_order(group):
            for d in flagging:
                sel = _select(group, a, d)
                if sel:
                    rows.append([key] * len(lead) + [str(a), str(d)] + [
                        _mean(c.get(k) for c in sel) for k in ("recall", "fpr", "precision")] + [
                        _mean((c.get("auroc") for c in sel), 3), _mean((c.get("n_flagged") for c in sel), 0)])
    return Table(lead + ["attack", "defense", "recall %", "FPR %", "precision %", "AUROC", "flagged"], rows,
                 "Poisoned-sample detection vs ground truth (recall on poisoned, FPR on clean samples; "
                 "means over seeds).")


def cell_table(cells: Sequence[dict]) -> Table | None:
    """One row per (attack, target, rate, seed) and defense other than none: its ACC / ASR beside no
    defense's, the clean-model ASR floor, detection, seconds and the ratio to one standard training, and
    whether the cell was used to choose settings (``role``: tuning or validation)."""
    def key(c: dict) -> tuple:
        return (c.get("dataset"), c.get("model"), c.get("attack"), c.get("poison_rate"), c.get("target"), c.get("seed"))

    base = {key(c): c for c in cells if c.get("defense") == "none"}
    rows = []
    for c in cells:
        if c.get("defense") == "none":
            continue
        b = base.get(key(c), {})
        s, t = _num(c.get("seconds")), _num(c.get("standard_train_seconds"))
        rows.append([str(c.get("attack")), fmt(c.get("target")), _rate(c.get("poison_rate")), fmt(c.get("seed")),
                     str(c.get("defense")), fmt(b.get("acc")), fmt(b.get("asr")), fmt(c.get("acc")), fmt(c.get("asr")),
                     fmt(c.get("clean_model_asr")), fmt(c.get("recall")), fmt(c.get("fpr")), fmt(c.get("n_flagged")),
                     fmt(s, 0), fmt(s / t if s is not None and t else None) + "×", str(c.get("role") or DASH)])
    if not rows:
        return None
    return Table(["attack", "target", "rate", "seed", "defense", "none ACC", "none ASR", "ACC", "ASR", "floor",
                  "recall %", "FPR %", "flagged", "s", "× std", "role"], rows,
                 "One row per cell. floor: the trigger's ASR on the model trained without poison. role: tuning = "
                 "used to choose settings, validation = not.")


def seconds_table(cells: Sequence[dict]) -> Table:
    """Wall seconds of each defense and its ratio to one standard training run on the same data."""
    defenses = defense_order(cells)
    groups = group_cells(cells)
    lead = ["setting"] if len(groups) > 1 else []
    rows = []
    for key, group in groups:
        for a in attack_order(group):
            row = [key] * len(lead) + [str(a)]
            for d in defenses:
                sel = _select(group, a, d)
                ratios = [s / t for s, t in ((_num(c.get("seconds")), _num(c.get("standard_train_seconds")))
                                             for c in sel) if s is not None and t]
                row += [_mean((c.get("seconds") for c in sel), 1), _mean(ratios) + ("×" if ratios else "")]
            rows.append(row)
    return Table(
        lead + ["attack"] + [f"{d} {m}" for d in defenses for m in ("s", "× std")], rows,
        "Wall seconds of the defense (of training for 'none'; means over seeds) and ratio to one standard "
        "training run on the same data and device.",
        groups=[("", len(lead) + 1)] + [(str(d), 2) for d in defenses],
        sub=lead + ["attack"] + ["s", "× std"] * len(defenses),
    )


def is_numeric(s: Any) -> bool:
    """True for display strings of numbers (``85.1±0.3``, ``2.0×``, ``12 (3%)``, the dash)."""
    t = str(s).replace("±", " ").replace("×", " ").replace("%", " ").replace(DASH, "0").replace(",", "")
    if not t.strip():  # an empty cell does not make a column textual
        return True
    try:
        float(t.split()[0])
        return True
    except (ValueError, IndexError):
        return False


def md_escape(s: Any) -> str:
    """Make a user string inert inside a Markdown table cell."""
    s = " ".join(str(s).split())
    for ch in "\\`*[]|":
        s = s.replace(ch, "\\" + ch)
    return s.replace("<", "&lt;").replace(">", "&gt;")


def to_markdown(t: Table) -> str:
    lines = ["| " + " | ".join(md_escape(h) for h in t.headers) + " |",
             "|" + "|".join("---:" if i and all(is_numeric(r[i]) for r in t.rows if i < len(r)) else "---"
                            for i in range(len(t.headers))) + "|"]
    for i, r in enumerate(t.rows):
        cells = [md_escape(c) for c in r]
        if i in t.highlight and cells:
            cells[0] = f"**{cells[0]}**"
        lines.append("| " + " | ".join(cells) + " |")
    if t.caption:
        lines += ["", md_escape(t.caption)]
    return "\n".join(lines) + "\n"


def results_markdown(cells: Sequence[dict]) -> str:
    """The whole ``results.md``: one Table II block per setting, then detection and seconds tables."""
    cells = [c for c in cells if isinstance(c, dict)]
    out = ["# Benchmark results", ""]
    meta = {k: sorted({str(c.get(k)) for c in cells if c.get(k) is not None}) for k in
            ("profile", "device", "torch_version", "advrbd_version")}
    out += [f"{len(cells)} cells; " + "; ".join(f"{k}: {', '.join(v)}" for k, v in meta.items() if v), ""]
    if not cells:
        return "\n".join(out + ["No finished cells yet.", ""])
    out += ["## ACC / ASR (Table II)", ""]
    for key, group in group_cells(cells):
        out += [f"### {md_escape(key)}", "", to_markdown(results_table(group))]
    det = detection_table(cells)
    out += ["## Detection", "", to_markdown(det) if det else "No defense in these cells flags samples.\n"]
    out += ["## Cost", "", to_markdown(seconds_table(cells))]
    per_cell = cell_table(cells)
    if per_cell:
        out += ["## Every cell", "", to_markdown(per_cell)]
    return "\n".join(out)


def write_results_md(cells: Sequence[dict], path: str | os.PathLike) -> None:
    atomic_write_text(path, results_markdown(cells))


def results_csv_text(cells: Sequence[dict]) -> str:
    """One CSV row per cell: the SPEC keys in order, then any extra keys (sorted); ``None`` → empty."""
    cells = [c for c in cells if isinstance(c, dict)]
    extra = sorted({k for c in cells for k in c} - set(RESULT_KEYS))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(RESULT_KEYS + tuple(extra))
    for c in cells:
        w.writerow(["" if c.get(k) is None else c.get(k) for k in RESULT_KEYS + tuple(extra)])
    return buf.getvalue()


def write_results_csv(cells: Sequence[dict], path: str | os.PathLike) -> None:
    atomic_write_text(path, results_csv_text(cells))


results_to_csv = write_results_csv
