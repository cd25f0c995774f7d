"""Model metrics (SPEC §6): ACC on the clean test set, ASR on the attack's triggered test set."""
from __future__ import annotations

import torch

from ..train.infer import predict
from ..types import EvalResult, ImageData


def attack_success_rate(model: torch.nn.Module, asr_set: ImageData, target: int, precision: str = "auto") -> float:
    """Percent of the triggered non-target test images classified as ``target``."""
    if len(asr_set) == 0:
        return float("nan")
    return 100.0 * (predict(model, asr_set, precision=precision) == target).float().mean().item()


def evaluate(model: torch.nn.Module, test: ImageData, attack=None, asr_set: ImageData | None = None,
             precision: str = "auto") -> EvalResult:
    """ACC (percent, on ``test``) and, with an attack, ASR (percent, on ``attack.make_asr_set(test)``).

    precision: "auto" = bf16 autocast where the device runs it fast, "fp32" = exact float32 inference.
    """
    acc = 100.0 * (predict(model, test, precision=precision) == test.labels).float().mean().item() if len(test) else float("nan")
    if attack is None:
        return EvalResult(acc=acc, n_test=len(test))
    if asr_set is None:
        asr_set = attack.make_asr_set(test)
    return EvalResult(acc=acc, n_test=len(test), asr=attack_success_rate(model, asr_set, attack.target, precision),
                      n_asr=len(asr_set))
