"""Known answers of the detection metrics (the one implementation the pipeline and the report share)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from advrbd.metrics.detection import auroc, detection_metrics


def _pairwise_auroc(s: np.ndarray, y: np.ndarray) -> float:
    pos, neg = s[y][:, None], s[~y][None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def test_auroc_matches_the_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 200).astype(float)  # many ties
    y = rng.random(200) < 0.3
    assert auroc(torch.from_numpy(s), torch.from_numpy(y)) == pytest.approx(_pairwise_auroc(s, y))
    assert auroc(s, np.zeros(200, bool)) is None and auroc(s, np.ones(200, bool)) is None


def test_auroc_leaves_out_non_finite_scores():
    s = np.array([0.1, 0.2, np.nan, 0.9, np.inf])
    y = np.array([False, False, False, True, False])
    assert auroc(s, y) == 1.0


def test_counts_rates_and_cover_handling():
    flagged = torch.tensor([1, 1, 0, 1, 0, 0, 1, 0], dtype=torch.bool)
    poison = torch.tensor([1, 1, 1, 0, 0, 0, 0, 0], dtype=torch.bool)
    cover = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1], dtype=torch.bool)
    scores = torch.tensor([0.9, 0.8, 0.1, 0.7, 0.2, 0.3, 5.0, 6.0])
    labels = torch.tensor([1, 1, 1, 0, 0, 1, 0, 1])
    m = detection_metrics(flagged, poison, cover, scores, labels, ["a", "b"])
    assert (m["tp"], m["fp"], m["n_flagged"], m["n_poison"], m["n_cover"]) == (2, 1, 4, 3, 2)
    assert m["recall"] == pytest.approx(200 / 3) and m["fpr"] == pytest.approx(100 / 3)
    assert m["precision"] == pytest.approx(200 / 3) and m["f1"] == pytest.approx(200 / 3)
    assert m["cover_flagged"] == 50.0
    # cover samples (the two highest scores) are left out of the AUROC: poisons 0.9, 0.8, 0.1 vs 0.7, 0.2, 0.3
    assert m["auroc"] == pytest.approx(6 / 9)
    a, b = m["per_class"]
    assert (a["class"], a["n"], a["n_poison"], a["n_flagged"], a["fpr"], a["recall"]) == ("a", 3, 0, 2, 50.0, None)
    assert (b["n_poison"], b["recall"], b["precision"], b["fpr"]) == (3, pytest.approx(200 / 3), 100.0, 0.0)


def test_nothing_flagged_and_no_poison():
    m = detection_metrics(np.zeros(4, bool), np.zeros(4, bool))
    assert m["recall"] is None and m["precision"] is None and m["f1"] is None and m["fpr"] == 0.0
    assert m["auroc"] is None and "per_class" not in m


def test_report_numbers_are_the_metrics_numbers():
    from advrbd.report.detection import compute_detection
    from advrbd.report.load import Samples

    rng = np.random.default_rng(1)
    n = 50
    poison, cover = rng.random(n) < 0.2, rng.random(n) < 0.1
    cover &= ~poison
    score = rng.random(n) + poison
    flagged = score > 0.8
    sm = Samples(np.arange(n), [""] * n, rng.integers(0, 3, n), score, flagged, np.zeros(n, int), poison, cover)
    got, ref = compute_detection(sm), detection_metrics(flagged, poison, cover, score)
    assert got == {k: ref[k] for k in got}
