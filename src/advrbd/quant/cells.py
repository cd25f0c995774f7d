"""Deployed precisions of benchmark cells (``advrbd bench --precisions``).

Each cell's final model is kept as ``work/<cell>/<defense>/final-<variant>.safetensors`` so a later
``--precisions`` call on the same bench folder deploys it without retraining. Cells finished before that
file existed are re-run from their stage checkpoints (the standard model, AdvrBD's stages and the baselines'
``fit`` checkpoints are all kept), which loads rather than trains.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import torch

from ..io import load_state_dict, save_state_dict
from .deployed import deploy_and_measure


def final_model_path(workdir: Path, defense_entry: str) -> Path:
    slug = re.sub(r"[^\w.-]+", "_", defense_entry)[:60]
    if slug != defense_entry:
        slug += "-" + hashlib.sha256(defense_entry.encode()).hexdigest()[:8]
    return workdir / f"final-{slug}.safetensors"


def save_final_model(workdir: Path, defense_entry: str, model: torch.nn.Module | None) -> None:
    if model is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        save_state_dict(final_model_path(workdir, defense_entry), model.state_dict())


def load_final_model(workdir: Path, defense_entry: str, new_model) -> torch.nn.Module | None:
    p = final_model_path(workdir, defense_entry)
    if not p.is_file():
        return None
    model = new_model()
    model.load_state_dict(load_state_dict(p))
    return model.eval()


def needs_deployment(cell: dict, precisions) -> bool:
    return bool(precisions) and not set(precisions) <= set(cell.get("deployed") or {})


def deployed_fields(model: torch.nn.Module, workdir: Path, defense_entry: str, name: str, settings: dict,
                    train, test, attack, asr_set, recipe, precisions, seed: int) -> dict:
    """``{"deployed": {precision: {acc, asr, ...}}, "deployed_validation": ...}``, plus ``nc_precisions``
    (Neural Cleanse's verdict on each artefact) for a ``neural_cleanse`` cell."""
    folder = final_model_path(workdir, defense_entry).with_suffix("")  # one folder of artefacts per column
    r = deploy_and_measure(model.cpu().eval(), folder, train, test, attack, asr_set, precisions, seed)
    out = {"deployed": r["metrics"],
           "deployed_validation": {"fp32_max_abs_diff": r["validation"]["fp32"]["max_abs_diff"],
                                   "atol": r["validation"]["fp32"]["atol"]}}
    if name == "neural_cleanse":
        from .detection import neural_cleanse_verdicts

        paths = {p: Path(v) for p, v in r["artefacts"].items()}
        out["nc_precisions"] = neural_cleanse_verdicts(paths, train, recipe, settings,
                                                       getattr(attack, "target", None))
    return out
