"""Report figures. Each function returns a ``matplotlib.figure.Figure`` on the Agg canvas (no pyplot,
no global state) with a title and axis labels. Scores: higher = more suspicious. Percent for ACC/ASR.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .tables import aggregate, attack_order, defense_order, group_cells

POISON, COVER, CLEAN, FLAG, GREY = "#d62728", "#ff7f0e", "#1f77b4", "#9467bd", "#7f7f7f"


def new_figure(width: float = 7.0, height: float = 4.0) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color=GREY)


def _edges(v: np.ndarray, bins: int) -> tuple[np.ndarray, bool]:
    """Shared bin edges; log-spaced when positive scores span more than three decades."""
    if v.size == 0:
        return np.linspace(0, 1, bins + 1), False
    lo, hi = float(v.min()), float(v.max())
    if lo > 0 and hi / lo > 1e3:
        return np.geomspace(lo, hi, bins + 1), True
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1), False


def score_histogram(scores: Sequence[float], *, threshold: float | None = None, poison=None, cover=None,
                    flagged=None, bins: int = 50, xlabel: str = "suspicion score (higher = more suspicious)",
                    title: str = "Suspicion score distribution") -> Figure:
    """Paper Fig. 5: suspicion-score histogram split into poisoned / cover / clean (ground truth), else into
    flagged / kept by the defense's verdict, with the threshold as a dashed line."""
    s = np.asarray(scores, dtype=np.float64)
    ok = np.isfinite(s)
    edges, logx = _edges(s[ok], bins)
    if poison is not None:
        p = np.asarray(poison, bool)
        c = np.zeros_like(p) if cover is None else np.asarray(cover, bool) & ~p
        groups = [("clean", ~p & ~c, CLEAN), ("cover", c, COVER), ("poisoned", p, POISON)]
    elif flagged is not None:
        f = np.asarray(flagged, bool)
        groups = [("kept (verdict clean)", ~f, CLEAN), ("flagged (verdict poisoned)", f, FLAG)]
    else:
        groups = [("all samples", np.ones_like(ok), GREY)]
    fig = new_figure(6.0, 4.0)
    ax = fig.add_subplot()
    for name, mask, colour in groups:
        v = s[ok & mask]
        if v.size or name != "cover":
            ax.hist(v, bins=edges, color=colour, alpha=0.55, edgecolor=colour, label=f"{name} (n={v.size})")
    if threshold is not None and math.isfinite(threshold):
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1.5, label=f"threshold = {threshold:.4g}")
    if not ok.any():
        _note(ax, "no finite scores")
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("number of training samples")
    ax.set_title(title)
    ax.legend(frameon=True, framealpha=0.85, edgecolor="none", loc="best")
    return fig


def rounds_plot(history: Sequence[dict]) -> Figure:
    """Paper Fig. 6: ACC and ASR of the enhanced model per backdoor-enhancement round (when measured),
    and the size of the surely-clean pool D_c on a second axis."""
    h = sorted((r for r in history if isinstance(r, dict)), key=lambda r: r.get("round", 0))
    x = [r.get("round", i) for i, r in enumerate(h)]
    val = lambda k: [np.nan if r.get(k) is None else float(r[k]) for r in h]  # noqa: E731
    acc, asr, pool = val("acc"), val("asr"), val("n_clean_pool")
    fig = new_figure(7.0, 4.2)
    ax = fig.add_subplot()
    measured = not (np.all(np.isnan(acc)) and np.all(np.isnan(asr)))
    lines = []
    if measured:
        lines += ax.plot(x, acc, "o-", color=CLEAN, label="ACC (clean test accuracy)")
        lines += ax.plot(x, asr, "s-", color=POISON, label="ASR (attack success rate)")
        ax.set_ylabel("percent")
        ax.set_ylim(-3, 103)
        pax = ax.twinx()
    else:
        pax = ax
    if not np.all(np.isnan(pool)):
        lines += pax.plot(x, pool, "d--", color=GREY, label="clean pool size |D_c|")
        pax.set_ylabel("samples in the clean pool D_c")
    elif not measured:
        _note(ax, "no per-round measurements")
        ax.set_ylabel("value")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("backdoor-enhancement round")
    ax.set_title("ACC and ASR across backdoor-enhancement rounds")
    if lines:
        fig.legend(lines, [ln.get_label() for ln in lines], frameon=False, loc="outside lower center",
                   ncols=len(lines), fontsize=9)
    return fig


def _pairs(scores, truth) -> tuple[np.ndarray, np.ndarray]:
    s, y = np.asarray(scores, np.float64), np.asarray(truth, bool)
    ok = np.isfinite(s)
    return s[ok], y[ok]


def roc_plot(scores, is_poison, flagged=None) -> Figure:
    """ROC curve of the score against the true poison flag (AUROC in the legend); the defense's own
    verdict, when given, is marked as its operating point."""
    from sklearn.metrics import roc_auc_score, roc_curve

    s, y = _pairs(scores, is_poison)
    fig = new_figure(5.2, 4.4)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ":", color=GREY, label="chance")
    if y.any() and not y.all():
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, color=POISON, linewidth=2, label=f"score (AUROC = {roc_auc_score(y, s):.4f})")
        if flagged is not None:
            f = np.asarray(flagged, bool)[np.isfinite(np.asarray(scores, np.float64))]
            ax.plot([f[~y].mean()], [f[y].mean()], "k*", markersize=12, label="verdict")
    else:
        _note(ax, "undefined: needs poisoned and clean samples")
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), xlabel="false positive rate (clean flagged)",
           ylabel="true positive rate (poisoned flagged)", title="ROC of the suspicion score")
    ax.legend(frameon=False, loc="lower right")
    return fig


def pr_plot(scores, is_poison, flagged=None) -> Figure:
    """Precision–recall curve of the score against the true poison flag (average precision in the legend)."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    s, y = _pairs(scores, is_poison)
    fig = new_figure(5.2, 4.4)
    ax = fig.add_subplot()
    if y.any() and not y.all():
        prec, rec, _ = precision_recall_curve(y, s)
        ax.plot(rec, prec, color=POISON, linewidth=2, label=f"score (AP = {average_precision_score(y, s):.4f})")
        ax.axhline(y.mean(), linestyle=":", color=GREY, label=f"chance (poison rate {y.mean():.2%})")
        if flagged is not None:
            f = np.asarray(flagged, bool)[np.isfinite(np.asarray(scores, np.float64))]
            if f.any():
                ax.plot([f[y].mean()], [y[f].mean()], "k*", markersize=12, label="verdict")
    else:
        _note(ax, "undefined: needs poisoned and clean samples")
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.03), xlabel="recall (poisoned flagged)",
           ylabel="precision (flagged that are poisoned)", title="Precision–recall of the suspicion score")
    ax.legend(frameon=False, loc="lower left")
    return fig


def per_class_plot(names: Sequence[str], n_flagged, n_poison=None, n_false=None, highlight: int | None = None,
                   highlight_label: str = "target class") -> Figure:
    """Bars per class: true poisons next to flagged samples (flagged split into poisoned / not poisoned
    when ``n_false`` is given). ``highlight``: class index to mark (the target class)."""
    k = len(names)
    x = np.arange(k)
    fig = new_figure(min(16.0, max(7.0, 0.45 * k)), 4.2)
    ax = fig.add_subplot()
    w = 0.4 if n_poison is not None else 0.7
    off = w / 2 if n_poison is not None else 0.0
    if n_poison is not None:
        ax.bar(x - off, n_poison, w, color="white", edgecolor=POISON, hatch="//", label="true poisons")
    nf = np.asarray(n_flagged, float)
    if n_false is not None:
        fp = np.asarray(n_false, float)
        ax.bar(x + off, nf - fp, w, color=POISON, label="flagged, poisoned")
        ax.bar(x + off, fp, w, bottom=nf - fp, color=COVER, label="flagged, not poisoned")
    else:
        ax.bar(x + off, nf, w, color=FLAG, label="flagged")
    step = max(1, math.ceil(k / 50))
    short = [str(n) if len(str(n)) <= 16 else str(n)[:15] + "…" for n in names]
    ax.set_xticks(x[::step], short[::step], rotation=45 if k > 6 else 0,
                  ha="right" if k > 6 else "center", fontsize=8 if k > 20 else 9)
    if highlight is not None and 0 <= highlight < k:
        ax.axvspan(highlight - 0.5, highlight + 0.5, color="#ffd54f", alpha=0.35, label=highlight_label, zorder=0)
        if highlight % step == 0:
            tick = ax.get_xticklabels()[highlight // step]
            tick.set_color(POISON)
            tick.set_fontweight("bold")
    ax.set_xlim(-0.6, k - 0.4)
    ax.set_xlabel("class (given label)")
    ax.set_ylabel("number of training samples")
    ax.set_title("Flagged samples and true poisons per class" if n_poison is not None else "Flagged samples per class")
    ax.legend(frameon=False)
    return fig


def gallery_plot(images: np.ndarray, captions: Sequence[str], title: str, ncols: int = 8,
                 ylabel: str = "samples, row by row in score order", marks: np.ndarray | None = None) -> Figure:
    """Grid of uint8 ``k×H×W×C`` images with a short caption (e.g. ``#12 s=3.1`` / ``cat → dog``) above each.
    Drawn as one mosaic in a single axes: a subplot per image makes the layout engine ~10× slower."""
    imgs = np.asarray(images)
    k = len(imgs)
    ncols = max(1, min(ncols, k))
    nrows = max(1, math.ceil(k / ncols))
    h, w = (imgs.shape[1], imgs.shape[2]) if k else (32, 32)
    gap, head = max(2, int(w * 0.45)), max(4, int(h * 0.6))  # room between tiles and for two caption lines
    th, tw = head + h + gap // 2, w + gap
    mosaic = np.full((nrows * th + gap // 2, ncols * tw, 3), 255, np.uint8)
    width = 1.45 * ncols + 0.6
    fig = new_figure(width, (width - 0.6) * mosaic.shape[0] / mosaic.shape[1] + 0.9)
    ax = fig.add_subplot()
    for i in range(k):
        r, q = divmod(i, ncols)
        y0, x0 = r * th + head, q * tw + gap // 2
        tile = imgs[i][..., :3] if imgs.shape[-1] >= 3 else np.repeat(imgs[i][..., :1], 3, axis=-1)
        mosaic[y0:y0 + h, x0:x0 + w] = tile
        if marks is not None and i < len(marks) and marks[i]:  # a red frame around known poisons
            b = max(1, gap // 4)
            mosaic[y0 - b:y0, x0 - b:x0 + w + b] = mosaic[y0 + h:y0 + h + b, x0 - b:x0 + w + b] = (200, 30, 30)
            mosaic[y0:y0 + h, x0 - b:x0] = mosaic[y0:y0 + h, x0 + w:x0 + w + b] = (200, 30, 30)
        ax.text(x0 + w / 2, y0 - 0.5, captions[i] if i < len(captions) else "", ha="center", va="bottom",
                fontsize=7, linespacing=1.15)
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for sp in ax.spines.values():
        sp.set_visible(False)
    if k == 0:
        _note(ax, "no images")
    ax.set_title(title)
    ax.set_xlabel("caption: training index, score / given label → suggested label", fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    return fig


def bench_bar_plot(cells: Sequence[dict]) -> Figure:
    """Grouped bars of mean ACC (top) and ASR (bottom) per attack (× setting when several) and defense."""
    groups = group_cells(cells)
    defenses = defense_order(cells)
    labels, acc, asr = [], [], []
    for key, group in groups:
        a_acc, a_asr = aggregate(group, "acc"), aggregate(group, "asr")
        for a in attack_order(group):
            labels.append(str(a) if len(groups) == 1 else f"{a}\n{key}")
            acc.append([a_acc.get((a, d)) for d in defenses])
            asr.append([a_asr.get((a, d)) for d in defenses])
    n = max(1, len(labels))
    fig = new_figure(min(16.0, max(7.0, 0.9 * n * max(1, len(defenses)) ** 0.5)), 6.5)
    axes = fig.subplots(2, 1, sharex=True)
    w = 0.8 / max(1, len(defenses))
    x = np.arange(len(labels))
    for ax, data, name in ((axes[0], acc, "ACC (%)"), (axes[1], asr, "ASR (%)")):
        for j, d in enumerate(defenses):
            vals = [np.nan if row[j] is None else row[j] for row in data]
            ax.bar(x - 0.4 + w * (j + 0.5), vals, w, label=str(d))
        ax.set_ylabel(name)
        ax.set_ylim(0, 105)
        ax.grid(axis="y", alpha=0.3)
    if not labels:
        _note(axes[0], "no cells")
    axes[1].set_xticks(x, labels, fontsize=8)
    axes[1].set_xlabel("attack")
    axes[0].set_title("ACC and ASR per attack and defense")
    if defenses:
        fig.legend(*axes[0].get_legend_handles_labels(), frameon=False, ncols=min(len(defenses), 8), fontsize=9,
                   loc="outside lower center", title="defense", title_fontsize=9)
    return fig


def figure_png(fig: Figure, dpi: int = 110) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def describe(fig: Figure) -> dict[str, Any]:
    """Title and axis labels of a figure (used by tests and for alt text)."""
    axes = [a for a in fig.axes if a.axison]
    first = lambda get, fallback: next((get(a) for a in axes if get(a)), fallback)  # noqa: E731
    return {"title": fig.get_suptitle() or first(lambda a: a.get_title(), ""),
            "xlabel": first(lambda a: a.get_xlabel(), fig.get_supxlabel()),
            "ylabel": first(lambda a: a.get_ylabel(), fig.get_supylabel())}
