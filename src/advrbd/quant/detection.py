"""Neural Cleanse's verdict on each deployed artefact (paper 000: INT8 drove every defense's detection to 0%).

Neural Cleanse needs gradients, so it runs on :class:`.onnx_torch.OnnxTorch`, the file's own graph (INT8 /
INT4 weights and calibrated activation quantization) re-executed in PyTorch. Every precision, FP32 included,
takes this path in float32, so the verdicts differ only by the artefact.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..defenses import DefenseContext, create_defense
from ..types import ImageData
from .onnx_torch import OnnxTorch


def _no_new_model():  # pragma: no cover - Neural Cleanse never trains a model
    raise RuntimeError("Neural Cleanse on a deployed artefact trains nothing")


def neural_cleanse_verdicts(paths: dict[str, Path], train: ImageData, recipe, settings: dict | None = None,
                            target: int | None = None) -> dict:
    """``{precision: {"flagged_class", "flagged_classes", "anomaly_index", "detected"}}``; ``detected`` is
    whether the attack's ``target`` is the top flagged class (None without a target)."""
    out = {}
    rec = replace(recipe, precision="fp32")
    for p, path in paths.items():
        nc = create_defense("neural_cleanse", **(settings or {}))
        ctx = DefenseContext(train=train, new_model=_no_new_model, recipe=rec,
                             standard_model=lambda path=path: OnnxTorch(path))
        info = nc.run(ctx).info
        out[p] = {"flagged_class": info["flagged_class"], "flagged_classes": info["flagged_classes"],
                  "anomaly_index": info["anomaly_index"],
                  "detected": None if target is None else info["flagged_class"] == target}
    return out
