"""Small helpers shared by the defenses: feature extraction, per-sample losses, setting checks, stage lengths.

No training loops live here: every baseline trains through :func:`advrbd.train.loop.fit`.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import BadInputError, ConfigError
from ..models.adapter import last_linear, penultimate
from ..train.infer import batched_apply, predict_logits
from ..types import ImageData


def check_range(name: str, value: float, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> None:
    """Raise ``ConfigError`` unless ``lo (<|<=) value (<|<=) hi``."""
    ok_lo = value > lo if lo_open else value >= lo
    ok_hi = value < hi if hi_open else value <= hi
    if not (ok_lo and ok_hi and math.isfinite(value)):
        left, right = "(" if lo_open else "[", ")" if hi_open else "]"
        raise ConfigError(f"setting {name!r} must be in {left}{lo}, {hi}{right}; got {value!r}")


def scaled_epochs(factor: float, epochs: int) -> int:
    """``factor × epochs`` rounded, at least 1: the one rule for stage lengths relative to the profile's recipe."""
    return max(1, int(round(factor * epochs)))


def stage_checkpoint(ctx, defense, stage: str) -> Path | None:
    """Checkpoint file of one ``fit`` stage, named after the defense's settings: ``fit`` fingerprints its own
    recipe, indices and weights but not a loss/mix hook or the model it starts from, so settings that change
    those (γ, prune ratio, CutMix β ...) must change the file."""
    h = hashlib.sha256(json.dumps(dataclasses.asdict(defense), sort_keys=True, default=str).encode()).hexdigest()
    return ctx.checkpoint(f"{defense.name}-{stage}-{h[:10]}.ckpt")


def clone_model(model: torch.nn.Module) -> torch.nn.Module:
    """Independent copy: ``ctx.backdoored_model()`` may hand the same cached object to several defenses."""
    return copy.deepcopy(model)


def require_classifier(model: torch.nn.Module, who: str) -> None:
    """The defense needs penultimate activations and a final linear layer (``models.adapter``): a model
    with ``features(x)`` and a linear ``head``, or any model whose last ``nn.Linear`` maps them to logits."""
    if last_linear(model) is None:
        raise BadInputError(f"{who} needs a model that ends in an nn.Linear layer; got {type(model).__name__}")


@torch.no_grad()
def features(model: torch.nn.Module, data: ImageData | torch.Tensor, batch_size: int = 512,
             precision: str = "auto") -> torch.Tensor:
    """Penultimate features (float32, CPU, ``N×D``) in eval mode: ``model.features(x)``, or the input of the
    model's last ``nn.Linear`` for any other model (``models.adapter.penultimate``).

    data: ``ImageData`` (uint8) or float ``[0,1]`` NCHW tensor.
    """
    return batched_apply(model, data, lambda x: penultimate(model, x), batch_size, precision)


def per_sample_loss(model: torch.nn.Module, data: ImageData, labels: torch.Tensor | None = None,
                    precision: str = "auto") -> torch.Tensor:
    """Cross-entropy of every sample (float32, CPU, ``N``) in eval mode, without augmentation."""
    logits = predict_logits(model, data, precision=precision)
    y = data.labels if labels is None else labels
    return F.cross_entropy(logits, y.cpu(), reduction="none")


def fraction_count(fraction: float, n: int) -> int:
    """How many of ``n`` samples a rate ``fraction`` selects (at least 1 when ``fraction > 0``)."""
    if fraction <= 0 or n == 0:
        return 0
    return min(n, max(1, int(round(fraction * n))))


@contextlib.contextmanager
def frozen_bn_stats(model: torch.nn.Module):
    """Keep BatchNorm running statistics fixed while training (momentum 0): training on a small, one-sided
    set (unlearning a few isolated samples) would otherwise overwrite the statistics of the whole data."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield model
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom
