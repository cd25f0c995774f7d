"""Report: fake run / bench directories → report.html + report.md; figures have titles and axis labels."""
from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from advrbd.errors import BadInputError

EVIL = '<script>alert("x")</script>'
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", EVIL]
RUN_IDS = ("verdict", "summary", "scores", "rounds", "detection", "per-class", "gallery", "metrics", "settings")
BENCH_IDS = ("summary", "results", "detection", "seconds", "chart")


def make_run(d: Path, *, full: bool = True, evil: bool = True, n: int = 400, seed: int = 0) -> Path:
    """A run directory like the lead's pipeline writes; ``full=False`` writes only summary.json."""
    rng = np.random.default_rng(seed)
    classes = CLASSES if evil else CLASSES[:-1] + ["truck"]
    d.mkdir(parents=True, exist_ok=True)
    given = rng.integers(0, 10, n)
    poison = np.zeros(n, bool)
    poison[rng.choice(n, n // 20, replace=False)] = True
    cover = np.zeros(n, bool)
    cover[rng.choice(np.flatnonzero(~poison), n // 50, replace=False)] = True
    true_label = given.copy()
    given[poison] = 1  # all-to-one, target 1
    score = np.where(poison, rng.normal(3.0, 0.6, n), rng.normal(1.0, 0.7, n)) + 0.4 * cover
    flagged = poison & (rng.random(n) < 0.9) | ((given == 1) & (rng.random(n) < 0.15))
    suggested = np.where(flagged, true_label, given)
    summary = {"kind": "defend", "data": f"imagefolder:/data/{'<b>bad</b>' if evil else 'cifar10'}",
               "defense": "advrbd", "model": "fastnet",
               "settings": {"rho": 0.05, "rounds": 4, "eps": 0.0314, "note": EVIL if evil else "ok",
                            "pgd": {"steps": 3, "patch": 5}},
               "counts": {"n_train": n, "n_flagged": int(flagged.sum()), "n_classes": 10}, "threshold": 2.1,
               "stage_seconds": {"warmup": 12.5, "scoring": 30.1, "enhance": 44.0, "retrain": 60.2},
               "total_seconds": 146.8, "device": "cpu (2 threads)", "classes": classes, "attack": "badnet",
               "recipe": {"epochs": 20, "lr": 0.1, "batch_size": 256},
               "torch_version": "2.4", "advrbd_version": "0.1.0",
               "history": [{"round": r, "n_clean_pool": 20 * (r + 1), "acc": 85.0 - 9 * r, "asr": 90.0 + 2 * r}
                           for r in range(5)]}
    (d / "summary.json").write_text(json.dumps(summary))
    if not full:
        return d
    with open(d / "samples.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "path", "given_label", "score", "verdict", "suggested_label", "consistency_kl",
                    "true_label", "true_poison", "true_cover"])
        kl = np.exp(-score + rng.normal(0, 0.3, n))
        for i in range(n):
            w.writerow([i, f"/data/{i}{EVIL if evil and i == 0 else ''}.png", given[i], f"{score[i]:.5f}",
                        "poisoned" if flagged[i] else "clean", suggested[i], f"{kl[i]:.5g}", true_label[i],
                        int(poison[i]), int(cover[i])])
    per_class = [{"class": c, "label": k, "n": int((given == k).sum()), "n_poison": int((poison & (given == k)).sum()),
                  "n_flagged": int((flagged & (given == k)).sum()), "recall": 90.0 if k == 1 else None,
                  "fpr": 15.0 if k == 1 else 0.0, "precision": 50.0 if k == 1 else None} for k, c in enumerate(classes)]
    evaluation = {"acc": 84.2, "asr": 0.8, "n_test": 10000, "n_asr": 9000, "recall": 90.0, "fpr": 1.5,
                  "precision": 70.0, "f1": 78.75, "auroc": 0.97, "n_poison": int(poison.sum()),
                  "n_cover": int(cover.sum()), "cover_flagged": 12.5, "n_flagged": int(flagged.sum()),
                  "per_class": per_class,
                  "no_defense": {"acc": 87.1, "asr": 88.4},
                  "quant": {"fp32": {"acc": 84.2, "asr": 0.8}, "int8": {"acc": 84.0, "asr": 0.9},
                            "int4": {"acc": 80.1, "asr": 1.4}}}
    (d / "evaluation.json").write_text(json.dumps(evaluation))
    order = np.argsort(-score)
    imgs = rng.integers(0, 256, (2, 16, 32, 32, 3), dtype=np.uint8)
    imgs[0, :, 26:31, 26:31] = 255  # a visible "trigger" on the most suspicious
    arrays = {}
    for j, (prefix, idx) in enumerate((("most", order[:16]), ("least", order[-16:]))):
        arrays.update({f"{prefix}_images": imgs[j], f"{prefix}_index": idx, f"{prefix}_given": given[idx],
                       f"{prefix}_suggested": suggested[idx], f"{prefix}_score": score[idx]})
    np.savez(d / "suspicious.npz", **arrays)
    return d


def make_bench(d: Path, *, evil: bool = True) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    cells = []
    for attack in ("badnet", "blend", EVIL if evil else "wanet"):
        for defense in ("none", "abl", "advrbd"):
            for seed in (0, 1):
                flags = defense != "none"
                cells.append({"profile": "smoke", "dataset": "synthetic", "model": "tiny", "attack": attack,
                              "poison_rate": 0.05, "target": 1, "defense": defense, "seed": seed,
                              "acc": 80.0 + seed + (defense == "advrbd"),
                              "asr": 95.0 if defense == "none" else 1.0 + seed,
                              "n_test": 1000, "n_asr": 900, "recall": 99.0 if flags else None,
                              "fpr": 2.0 if flags else None, "precision": 80.0 if flags else None,
                              "auroc": 0.99 if flags else None, "n_flagged": 60 if flags else None,
                              "seconds": 10.0 * (1 + flags), "standard_train_seconds": 10.0, "device": "cpu",
                              "torch_version": "2.4", "advrbd_version": "0.1.0"})
    (d / "results.json").write_text(json.dumps(cells))
    return d


def test_full_run_report(tmp_path):
    from advrbd.report import write_report

    run = make_run(tmp_path / "run")
    out = write_report(run)
    assert out == run / "report.html"
    html = out.read_text()
    md = (run / "report.md").read_text()
    for sid in RUN_IDS:
        assert f'id="{sid}"' in html and f'id="{sid}"' in md
    assert html.count("data:image/png;base64,") == 9  # top gallery, 2 histograms, rounds, roc, pr, per-class, 2 galleries
    assert "<script" not in html and "&lt;script&gt;" in html and "&lt;b&gt;bad&lt;/b&gt;" in html
    assert "Not available" not in html
    assert "airplane" in html and "(target)" in html and 'class="hl"' in html
    for name in ("scores", "consistency", "rounds", "roc", "pr", "per_class", "gallery_most", "gallery_least"):
        assert (run / "figures" / f"{name}.png").stat().st_size > 1000
        assert f"figures/{name}.png" in md
    assert "<script" not in md


def test_minimal_run_says_not_available(tmp_path):
    from advrbd.report import write_report

    run = make_run(tmp_path / "run", full=False)
    (run / "figures").mkdir()
    (run / "figures" / "roc.png").write_bytes(b"stale figure of an earlier, richer run")
    html = write_report(run).read_text()
    for sid in RUN_IDS:
        assert f'id="{sid}"' in html
    assert html.count("Not available") >= 5
    assert html.count("data:image/png;base64,") == 1  # only the rounds plot
    assert sorted(p.name for p in (run / "figures").iterdir()) == ["rounds.png"]


def test_run_without_ground_truth(tmp_path):
    from advrbd.report import write_report

    run = make_run(tmp_path / "run", evil=False)
    rows = list(csv.reader(open(run / "samples.csv")))
    with open(run / "samples.csv", "w", newline="") as f:
        csv.writer(f).writerows(r[:6] for r in rows)  # no KL, no ground-truth columns
    (run / "evaluation.json").unlink()
    (run / "suspicious.npz").unlink()  # galleries are covered above
    html = write_report(run).read_text()
    assert "verdict poisoned" in html or "defense&#x27;s verdict" in html
    assert "likely the target" in html and html.count("data:image/png;base64,") == 3
    assert "needs ground truth" in html


def test_corrupt_optional_piece_and_missing_inputs(tmp_path):
    from advrbd.report import write_report

    run = make_run(tmp_path / "run")
    (run / "samples.csv").unlink()  # fewer figures to draw; the point is the corrupt files below
    (run / "suspicious.npz").write_bytes(b"not a zip")
    (run / "evaluation.json").write_text("{broken")
    html = write_report(run).read_text()
    assert "could not read suspicious.npz" in html and "could not read evaluation.json" in html
    with pytest.raises(BadInputError):
        write_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError):
        write_report(tmp_path / "empty")
    (run / "summary.json").write_text("[1, 2]")
    with pytest.raises(BadInputError):
        write_report(run)


def test_bench_report_and_tables(tmp_path):
    from advrbd.report import write_report, write_results_csv, write_results_md

    bench = make_bench(tmp_path / "bench")
    html = write_report(bench).read_text()
    for sid in BENCH_IDS:
        assert f'id="{sid}"' in html
    assert "data:image/png;base64," in html and "<script" not in html and "&lt;script&gt;" in html
    cells = json.loads((bench / "results.json").read_text())
    write_results_md(cells, bench / "results.md")
    md = (bench / "results.md").read_text()
    assert "| attack | none ACC | none ASR | abl ACC | abl ASR | advrbd ACC | advrbd ASR |" in md
    assert "| badnet | 80.50±0.71 | 95.00±0.00 | 80.50±0.71 |" in md and "| Average |" in md
    assert "2.00×" in md and "99.00" in md and "<script" not in md
    write_results_csv(cells, bench / "results.csv")
    rows = list(csv.DictReader(open(bench / "results.csv")))
    assert len(rows) == len(cells) and rows[0]["recall"] == "" and rows[-1]["defense"] == "advrbd"


def test_every_figure_has_title_and_axis_labels():
    from advrbd.report import plots

    rng = np.random.default_rng(1)
    s, y = rng.random(200), rng.random(200) < 0.1
    imgs = rng.integers(0, 256, (5, 8, 8, 1), dtype=np.uint8)
    figs = [plots.score_histogram(s, threshold=0.5, poison=y, cover=~y & (rng.random(200) < 0.05)),
            plots.score_histogram(s, flagged=y), plots.score_histogram(np.full(3, np.nan)),
            plots.rounds_plot([{"round": 0, "n_clean_pool": 10, "acc": 80, "asr": 50}]),
            plots.rounds_plot([{"round": 0, "n_clean_pool": 10, "acc": None, "asr": None}]),
            plots.roc_plot(s, y, flagged=y), plots.pr_plot(s, y), plots.roc_plot(s, np.zeros(200, bool)),
            plots.per_class_plot(["a", "b"], [3, 5], [0, 4], [3, 1], highlight=1), plots.per_class_plot(["a"], [2]),
            plots.gallery_plot(imgs, ["x"] * 5, "Most suspicious"), plots.bench_bar_plot([]),
            plots.bench_bar_plot([{"attack": "badnet", "defense": "none", "acc": 90, "asr": 99}])]
    for fig in figs:
        d = plots.describe(fig)
        assert d["title"] and d["xlabel"] and d["ylabel"], d
    for fig in figs[2], figs[7], figs[10]:  # the edge cases must draw too (the rest are drawn by the reports)
        assert plots.figure_png(fig)[:4] == b"\x89PNG"
    assert "AUROC" in " ".join(t.get_text() for t in figs[5].axes[0].get_legend().get_texts())


def _report_command():
    import argparse

    from advrbd.commands import report

    p = argparse.ArgumentParser()
    report.add_arguments(p)
    return report, p


def test_command_module(tmp_path, capsys):
    report, p = _report_command()
    run = make_run(tmp_path / "run", full=False)
    assert report.run(p.parse_args([str(run)])) == 0
    assert capsys.readouterr().out.strip() == str(run / "report.html")
    assert report.run(p.parse_args([str(run), "--json"])) == 0
    assert json.loads(capsys.readouterr().out) == {"report": str(run / "report.html")}
    assert report.run(p.parse_args([str(run), "--quiet"])) == 0
    assert capsys.readouterr().out == ""
    with pytest.raises(BadInputError):
        report.run(p.parse_args([str(tmp_path / "missing")]))


def test_cli_exit_codes(tmp_path, monkeypatch, capsys):
    from advrbd import cli

    # Other command modules may not exist yet: build the parser with the report command only.
    monkeypatch.setattr(cli, "COMMANDS", ("report",))
    run = make_run(tmp_path / "run", full=False)
    assert cli.main(["report", str(run)]) == 0
    assert cli.main(["report", str(tmp_path / "missing")]) == 2
    assert "no such directory" in capsys.readouterr().err


@pytest.mark.skipif(not all(importlib.util.find_spec(f"advrbd.commands.{c}") for c in
                            __import__("advrbd.cli", fromlist=["COMMANDS"]).COMMANDS),
                    reason="not every command module exists yet")
def test_cli_full_parser(tmp_path):
    from advrbd import cli

    run = make_run(tmp_path / "run", full=False)
    assert cli.main(["report", "--quiet", str(run)]) == 0
    assert cli.main(["report", str(tmp_path / "missing")]) == 2


def test_lead_run_writer_format(tmp_path):
    """The files advrbd.rundir writes (no model, ground truth, KL column) are read as intended."""
    import torch

    from advrbd.metrics.detection import detection_metrics
    from advrbd.report import write_report
    from advrbd.rundir import write_run
    from advrbd.types import DefenseResult, ImageData, PoisonedDataset

    g = torch.Generator().manual_seed(0)
    n = 120
    labels = torch.randint(0, 3, (n,), generator=g)
    data = ImageData(torch.randint(0, 256, (n, 8, 8, 3), dtype=torch.uint8, generator=g), labels,
                     ("a<b", "b", "c"))
    poison, cover = torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)
    poison[:6], cover[6:9] = True, True
    scores = torch.rand(n, generator=g) + 2 * poison
    result = DefenseResult(None, scores, scores > 1.5, labels, 1.5, ({"round": 0, "n_clean_pool": 5},),
                           {"consistency_scores": 1 / (1 + scores)})
    pd = PoisonedDataset(data, labels, poison, cover, "badnet")
    ev = detection_metrics(result.suspected, poison, cover, scores, labels, data.classes)
    summary = {"kind": "defend", "data": "synthetic", "defense": "advrbd", "classes": list(data.classes),
               "counts": {"n_train": n, "n_flagged": int(result.suspected.sum()), "n_classes": 3},
               "history": list(result.history)}
    write_run(tmp_path, data, result, summary, ev, pd)
    html = write_report(tmp_path).read_text()
    assert "a&lt;b" in html and html.count("data:image/png;base64,") == 9
    assert "could not" not in html and "(target)" in html


def test_first_section_states_the_verdict(tmp_path):
    """Issue 29: the report opens on the verdict in words (backdoor suspected, target class and evidence,
    number flagged, final accuracy against no defense) and the most suspicious images with known poisons
    marked; settings come last."""
    import re

    import torch

    from advrbd.report import write_report
    from advrbd.rundir import write_run
    from advrbd.types import DefenseResult, ImageData, PoisonedDataset
    from advrbd.verdict import run_verdict

    g = torch.Generator().manual_seed(0)
    n = 200
    labels = torch.randint(0, 4, (n,), generator=g)
    poison = torch.zeros(n, dtype=torch.bool)
    poison[:20] = True
    labels[poison] = 1
    data = ImageData(torch.randint(0, 256, (n, 8, 8, 3), dtype=torch.uint8, generator=g), labels,
                     ("cat", "dog", "ship", "frog"))
    flagged = poison.clone()
    flagged[25] = True  # one false positive in another class
    scores = torch.where(flagged, torch.rand(n, generator=g), torch.rand(n, generator=g) - 1)
    result = DefenseResult(None, scores, flagged, labels, 0.0, (), {"settings": {"rounds": 3}})
    ev = {"acc": 91.5, "asr": 0.4, "n_test": 1000, "n_asr": 900, "no_defense": {"acc": 92.0, "asr": 99.0}}
    verdict = run_verdict(data, result, ev)
    assert verdict["backdoor_suspected"] and verdict["target_class"] == 1
    summary = {"kind": "defend", "data": "x", "defense": "advrbd", "classes": list(data.classes),
               "counts": {"n_train": n, "n_flagged": 21, "n_classes": 4}, "settings": {"rounds": 3},
               "verdict": verdict}
    write_run(tmp_path, data, result, summary, ev, PoisonedDataset(data, labels, poison, ~poison & False, "badnet"))
    html = write_report(tmp_path).read_text()
    sections = re.findall(r'<section id="([^"]+)">', html)
    assert sections[0] == "verdict" and sections[-1] == "settings"
    first = html[html.index('<section id="verdict">'):html.index("</section>")]
    assert "Backdoor suspected, targeting class &#x27;dog&#x27; (label 1)" in first
    assert "21 of 200 training samples (10.5%) flagged" in first and "91.50% test accuracy" in first
    assert "against 92.00% without defense" in first and "known poisons (marked POISON" in first

    clean = run_verdict(data, DefenseResult(None, scores, torch.arange(n) % 10 == 0), None)
    assert not clean["backdoor_suspected"] and clean["sentence"].startswith("No backdoor suspected")
