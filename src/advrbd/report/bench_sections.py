"""Sections of a bench report (``advrbd bench`` output, ``DIR/results.json``): overview, Table II-shaped
results, detection, cost and a bar chart of ACC/ASR per attack × defense."""
from __future__ import annotations

from . import plots
from .render import Fig, Section, not_available
from .tables import attack_order, defense_order, detection_table, group_cells, results_table, seconds_table, Table


def _values(cells: list[dict], key: str) -> str:
    vals = list(dict.fromkeys(str(c.get(key)) for c in cells if c.get(key) is not None))
    return ", ".join(vals) if vals else "—"


def build_bench_sections(cells: list[dict]) -> list[Section]:
    empty = [not_available("results.json holds no finished cells yet")]
    overview = Table(["item", "value"], [
        ["cells", str(len(cells))],
        *[[k.replace("_", " "), _values(cells, k)] for k in
          ("profile", "dataset", "model", "poison_rate", "target", "seed", "device", "torch_version",
           "advrbd_version")],
        ["attacks", ", ".join(str(a) for a in attack_order(cells)) or "—"],
        ["defenses", ", ".join(str(d) for d in defense_order(cells)) or "—"],
    ])
    sections = [Section("summary", "Summary", [overview])]
    if not cells:
        return sections + [Section(i, t, list(empty)) for i, t in
                           (("results", "Results"), ("detection", "Detection"), ("seconds", "Cost"),
                            ("chart", "Chart"))]
    results = []
    for key, group in group_cells(cells):
        results.append(results_table(group, f"{key}: ACC / ASR in percent (mean±std over seeds); "
                                            "Average over attacks (paper Table II layout)."))
    det = detection_table(cells)
    return sections + [
        Section("results", "Results", results),
        Section("detection", "Detection", [det] if det else [not_available("no defense in these cells flags samples")]),
        Section("seconds", "Cost", [seconds_table(cells)]),
        Section("chart", "Chart", [Fig("bench_acc_asr", plots.bench_bar_plot(cells),
                                       "Mean ACC (top) and ASR (bottom) per attack and defense.")]),
    ]
