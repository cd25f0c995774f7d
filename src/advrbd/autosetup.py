"""Model and recipe chosen from the data and the device, for runs on a user's data without ``--profile``
(SPEC §9: profiles are for benchmarks; a user's dataset is used whole).

The rules reuse the recipes measured for the benchmark profiles (profiles.py), picked by training-set size:
under 5,000 images the demo's (batch 64: at batch 128 a 1,348-image set gets too few steps for a
backdoor to be learned reliably), under 20,000 the quick profile's (batch 128), otherwise the cpu profile's
(batch 512, ~1,000 images/s for fastnet ×½ on 2 cores). On a GPU the paper's ResNet-18 recipe.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from .profiles import PROFILES, Profile
from .train.precision import precision_choice
from .types import ImageData


def auto_profile(train: ImageData, device: torch.device) -> Profile:
    """A ``Profile`` named "auto" for ``train`` on ``device``: every sample, no subset."""
    n = len(train)
    c, h, w = train.shape
    if device.type == "cuda":
        base = PROFILES["paper"]
        recipe = base.recipe if n >= 5_000 else replace(base.recipe, batch_size=64)
        model, width = base.model, base.width
    else:
        base = PROFILES["demo"] if n < 5_000 else PROFILES["quick"] if n < 20_000 else PROFILES["cpu"]
        recipe = replace(base.recipe, flip=True) if base.name == "demo" else base.recipe
        model, width = "fastnet", 0.5
    why = (f"{n:,} images {h}×{w}×{c}, {train.num_classes} classes, {device.type}: "
           f"the {base.name} recipe for this size")
    return Profile("auto", model, width, recipe, subset=None, description=why)


def setup_line(profile: Profile, model: str, width: float | None, recipe, n_used: int, n_total: int,
               subset_source: str | None = None) -> tuple[str, dict]:
    """(one line saying what the run uses and why, the same as a dict for summary.json)."""
    dev = torch.device(recipe.device)
    bf16, why = precision_choice(dev.type)
    precision = recipe.precision if recipe.precision != "auto" else ("bf16" if bf16 else "fp32")
    reason = why if recipe.precision == "auto" else "set by the user"
    origin = "chosen from the data" if profile.name == "auto" else f"profile {profile.name}"
    w = f" ×{width:g}" if width is not None else ""
    if n_used < n_total:
        samples = f"a stratified subset of {n_used:,} of {n_total:,} training samples ({subset_source})"
    else:
        samples = f"all {n_total:,} training samples"
    line = (f"setup ({origin}): {model}{w}, {recipe.epochs} epochs at batch {recipe.batch_size}, lr {recipe.lr:g}, "
            f"{precision} on {dev.type} ({reason}); {samples}")
    info = {"source": "auto" if profile.name == "auto" else f"profile:{profile.name}", "model": model,
            "width": width, "epochs": recipe.epochs, "batch_size": recipe.batch_size, "device": str(dev),
            "precision": precision, "precision_reason": reason, "n_train_used": n_used, "n_train_total": n_total,
            "subset": subset_source if n_used < n_total else None, "why": profile.description, "line": line}
    return line, info
