"""ACC / ASR of deployed artefacts, measured with the runtime that serves them (ONNX Runtime, CPU).

``build_artefacts`` writes ``model-fp32.onnx``, ``model-int8.onnx``, ``model-int4-sim.onnx`` into a folder
(see :mod:`.onnx_export`); ``deployed_metrics`` evaluates them; ``calibration_images`` picks the few hundred
training images the static quantization is calibrated on (the untrusted training set is all a user has).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..io import read_json, write_json
from ..types import ImageData
from .onnx_export import PRECISIONS, export_onnx, quantize_onnx, run_onnx, session

N_CALIBRATION = 256


def calibration_images(train: ImageData, n: int = N_CALIBRATION, seed: int = 0) -> torch.Tensor:
    """``n`` training images (float [0,1] NCHW) drawn at random with a fixed seed."""
    g = torch.Generator().manual_seed(seed + 40_503)
    idx = torch.randperm(len(train), generator=g)[: min(n, len(train))]
    return train.float_nchw(idx)


def artefact_path(folder: str | Path, precision: str) -> Path:
    return Path(folder) / f"model-{precision}.onnx"


def build_artefacts(model: torch.nn.Module, folder: str | Path, calibration: torch.Tensor,
                    precisions=PRECISIONS) -> tuple[dict[str, Path], dict]:
    """Export (always) and quantize (as asked) ``model``; returns ({precision: path}, {precision: record}).
    The FP32 file is the source of the quantized ones, so it is written whatever ``precisions`` says."""
    folder = Path(folder)
    shape = tuple(calibration.shape[1:])
    fp32 = artefact_path(folder, "fp32")
    records = {"fp32": export_onnx(model, fp32, shape, probe=calibration[:32])}
    paths = {"fp32": fp32}
    for p in precisions:
        if p != "fp32":
            paths[p] = artefact_path(folder, p)
            records[p] = quantize_onnx(fp32, paths[p], calibration, p)
    write_json(folder / "artefacts.json", records)
    return {p: paths[p] for p in precisions}, records


def _eval_one(sess, test: ImageData, asr_set: ImageData | None, target: int | None) -> dict:
    pred = run_onnx(sess, test.float_nchw().numpy()).argmax(1)
    out = {"acc": 100.0 * float((pred == test.labels.numpy()).mean()) if len(test) else float("nan"),
           "n_test": len(test), "asr": None, "n_asr": None}
    if asr_set is not None and target is not None:
        pa = run_onnx(sess, asr_set.float_nchw().numpy()).argmax(1)
        out.update(asr=100.0 * float((pa == target).mean()) if len(asr_set) else float("nan"), n_asr=len(asr_set))
    return out


def deployed_metrics(paths: dict[str, Path], test: ImageData, attack=None, asr_set: ImageData | None = None) -> dict:
    """``{precision: {"acc", "asr", "n_test", "n_asr", "runtime"}}`` (percent), each file run by ORT."""
    if attack is not None and asr_set is None:
        asr_set = attack.make_asr_set(test)
    target = getattr(attack, "target", None)
    out = {}
    for p, path in paths.items():
        out[p] = {**_eval_one(session(path), test, asr_set, target), "runtime": "onnxruntime-cpu"}
    return out


def deploy_and_measure(model: torch.nn.Module, folder: str | Path, train: ImageData, test: ImageData, attack=None,
                       asr_set: ImageData | None = None, precisions=PRECISIONS, seed: int = 0) -> dict:
    """Build the artefacts of ``model`` in ``folder`` and measure them; also writes ``folder/deployed.json``."""
    paths, records = build_artefacts(model, folder, calibration_images(train, seed=seed), precisions)
    metrics = deployed_metrics(paths, test, attack, asr_set)
    write_json(Path(folder) / "deployed.json", metrics)
    return {"metrics": metrics, "artefacts": {p: str(v) for p, v in paths.items()}, "validation": records}


def load_deployed(folder: str | Path) -> dict | None:
    p = Path(folder) / "deployed.json"
    return read_json(p) if p.is_file() else None


def agreement(path_a: str | Path, path_b: str | Path, x: np.ndarray) -> float:
    """Fraction of images on which two ONNX files predict the same class."""
    a = run_onnx(session(path_a), x).argmax(1)
    b = run_onnx(session(path_b), x).argmax(1)
    return float((a == b).mean())
