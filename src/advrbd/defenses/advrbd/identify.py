"""Stage 3: identification with the backdoor-enhanced model.

The paper's rule: samples the enhanced model still classifies as their given label are poisoned,
misclassified ones clean. The continuous score is the margin ``logit[given] − max other logit`` (higher =
more suspicious); the verdict is ``score > 0``.

Two departures, both options (measured in settings.py):

- ``identify_eps > 0``: the margin is taken on an ε-bounded PGD perturbation of each image that attacks
  its given label. A memorised clean sample loses its label under it; a poison keeps it, because the
  trigger carries the prediction (the paper's own premise).
- ``null_quantile``: per-class calibration. Unlearning the clean pool does not spread evenly: the enhanced
  model collapses onto a few "sink" classes and predicts them for most inputs, so every sample *labelled*
  with a sink class is "still correctly classified" and flagged — whole classes vanish from clean
  training (digits, 0% poison: 135 of 137 ones flagged). The samples of *other* labels that the model
  predicts as class c show how strongly it pulls an arbitrary image to c; a sample labelled c is flagged
  only when its margin exceeds the ``null_quantile`` quantile of those samples' top-1 − top-2 margins
  (threshold 0 for a class with fewer than ``MIN_NULL`` such samples). A trigger lifts its target far
  above that pull. No ground truth is used: only given labels and the model's predictions.
"""
from __future__ import annotations

import torch

from ...adversarial import frozen_eval, pgd_against_label
from ...seeding import generator
from ...train.infer import autocast, model_device, predict_logits
from ...types import ImageData

MIN_NULL = 10  # fewest other-labelled samples predicted as a class for its calibrated threshold


def _margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    own = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).max(1).values
    return own - other


def given_label_margin(model: torch.nn.Module, data: ImageData, batch_size: int = 1024) -> torch.Tensor:
    """float32 ``N``: logit of the given label minus the largest other logit."""
    return _margin(predict_logits(model, data, batch_size=batch_size), data.labels)


def adversarial_logits(model: torch.nn.Module, data: ImageData, eps: float, steps: int, seed: int,
                       batch_size: int = 512) -> torch.Tensor:
    """float32 ``N × C`` (CPU): logits on an ε-bounded L∞ PGD perturbation of each image attacking its label."""
    dev = model_device(model)
    g = generator(seed, "advrbd-identify", device=dev)
    out = []
    with frozen_eval(model):
        for start in range(0, len(data), batch_size):
            idx = torch.arange(start, min(len(data), start + batch_size))
            x = data.float_nchw(idx, dev).contiguous(memory_format=torch.channels_last)
            y = data.labels[idx].to(dev)
            out.append(pgd_against_label(model, x, y, eps, steps, g, autocast_ctx=lambda: autocast(dev)).cpu())
    return torch.cat(out)


def null_thresholds(logits: torch.Tensor, y: torch.Tensor, q: float) -> torch.Tensor:
    """float32 ``C``: per class c, the q-quantile of top-1 − top-2 margins over samples labelled ≠ c that
    are predicted c (0 when fewer than ``MIN_NULL``)."""
    top2 = logits.topk(2, dim=1)
    pred, pull = top2.indices[:, 0], top2.values[:, 0] - top2.values[:, 1]
    tau = torch.zeros(logits.shape[1])
    for c in range(logits.shape[1]):  # C iterations, each vectorised over N
        null = pull[(pred == c) & (y != c)]
        if len(null) >= MIN_NULL:
            tau[c] = null.quantile(q).clamp_min(0)
    return tau


def identify(model: torch.nn.Module, data: ImageData, eps: float = 0.0, steps: int = 2, seed: int = 0,
             null_quantile: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(suspected bool N, score float N, per-class threshold float C). Verdict: ``score > 0``.

    ``eps = 0`` and ``null_quantile = 0`` (off): the paper's rule on the clean images.
    """
    if len(data) == 0:
        return torch.zeros(0, dtype=torch.bool), torch.zeros(0), torch.zeros(0)
    logits = adversarial_logits(model, data, eps, steps, seed) if eps > 0 else predict_logits(model, data)
    y = data.labels
    tau = null_thresholds(logits, y, null_quantile) if null_quantile > 0 else torch.zeros(logits.shape[1])
    score = _margin(logits, y) - tau[y]
    return score > 0, score, tau
