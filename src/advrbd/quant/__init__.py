"""Quantized-deployment check (paper 000: a defense judged at FP32 can fail at INT8/INT4).

Two paths. The deployed one (:mod:`.onnx_export`, :mod:`.deployed`): the model exported to ONNX and
quantized by ONNX Runtime, measured in ONNX Runtime (``advrbd export``, ``evaluate --precision``,
``bench --precisions``). This module's functions are the older SIMULATED check (``--quant``): nothing is
deployed, and the keys ``int8`` / ``int4`` of its output mean simulated weight rounding.

Simulated weight-only quantization: every Conv2d/Linear weight is rounded to a symmetric per-output-
channel grid of 2^(bits−1)−1 levels (INT8: 127, INT4: 7) and de-quantized back to float, activations stay
float, and inference runs in float32. This matches the accuracy effect of weight-only INT8/INT4 deployment; it is not a speed benchmark.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..metrics.model import evaluate
from ..types import ImageData


def quantize_weights(model: nn.Module, bits: int) -> nn.Module:
    """A copy of ``model`` with fake-quantized Conv2d/Linear weights (symmetric, per output channel)."""
    if not 2 <= bits <= 16:
        raise ValueError(f"bits must be in 2..16, got {bits}")
    q = copy.deepcopy(model).float()
    levels = 2 ** (bits - 1) - 1
    with torch.no_grad():
        for m in q.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                w = m.weight
                scale = w.abs().flatten(1).amax(1).clamp_min(1e-12) / levels
                shape = (-1,) + (1,) * (w.ndim - 1)
                m.weight.copy_((w / scale.view(shape)).round().clamp(-levels, levels) * scale.view(shape))
    return q


def quantized_metrics(model: nn.Module, test: ImageData, attack=None, asr_set: ImageData | None = None) -> dict:
    """``{"fp32": {...}, "int8": {...}, "int4": {...}}`` each with acc, asr (percent), n_test, n_asr."""
    if attack is not None and asr_set is None:
        asr_set = attack.make_asr_set(test)
    out = {}
    for name, bits in (("fp32", None), ("int8", 8), ("int4", 4)):
        m = model if bits is None else quantize_weights(model, bits)
        r = evaluate(m, test, attack, asr_set, precision="fp32")
        out[name] = {"acc": r.acc, "asr": r.asr, "n_test": r.n_test, "n_asr": r.n_asr}
    return out
