"""The defense contract.

A defense is a small dataclass of settings (constructor does no work) with one method,
``run(ctx) -> DefenseResult``. It sees only ``ctx``: the public training set (images and given labels,
never ground truth), a factory for fresh models, the standard training recipe, and (only when it declares
``requires_clean_reserve``) a reserved clean set. Evaluation against ground truth happens outside.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch

from ..registry import Registry
from ..train.loop import TrainConfig, fit
from ..types import DefenseResult, ImageData

DEFENSES: Registry = Registry("defense")


@dataclass
class DefenseContext:
    """Everything a defense may use.

    train:          public training set (poisoned images with given labels; no poison flags).
    new_model:      ``new_model() -> nn.Module``: a freshly initialised model of the run's architecture.
    recipe:         the standard training recipe of the profile (epochs, lr, batch, device, seed ...).
    clean_reserve:  reserved clean samples, only for defenses with ``requires_clean_reserve``.
    workdir:        folder for stage checkpoints (resume), or None.
    standard_model: optional ``() -> nn.Module`` giving a model trained normally on ``train`` (cached by
                    the pipeline so post-training defenses of one attack share it).
    progress:       show progress bars.
    """

    train: ImageData
    new_model: Callable[[], torch.nn.Module]
    recipe: TrainConfig
    clean_reserve: ImageData | None = None
    workdir: Path | None = None
    standard_model: Callable[[], torch.nn.Module] | None = None
    progress: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    def recipe_with(self, **changes: Any) -> TrainConfig:
        return replace(self.recipe, **changes)

    def checkpoint(self, name: str) -> Path | None:
        """Path of a stage checkpoint file inside ``workdir`` (None when no workdir)."""
        if self.workdir is None:
            return None
        self.workdir.mkdir(parents=True, exist_ok=True)
        return self.workdir / name

    def backdoored_model(self) -> torch.nn.Module:
        """A model trained with the standard recipe on the (possibly poisoned) training set."""
        if self.standard_model is not None:
            return self.standard_model()
        model = self.new_model()
        fit(model, self.train, self.recipe, checkpoint=self.checkpoint("standard.ckpt"),
            progress="standard training" if self.progress else False)
        return model


class Defense:
    """Base of every defense: subclasses are dataclasses of settings and implement ``run``."""

    name: ClassVar[str] = ""
    requires_clean_reserve: ClassVar[bool] = False
    flags_samples: ClassVar[bool] = False  # True if run() returns per-sample ``suspected``
    requires_ground_truth: ClassVar[bool] = False  # only the oracle reference row (evaluation only)

    def run(self, ctx: DefenseContext) -> DefenseResult:  # pragma: no cover - interface
        raise NotImplementedError


def create_defense(name: str, **settings: Any) -> Defense:
    """Instantiate a registered defense; unknown settings raise ``ConfigError``."""
    from ..config import build

    return build(DEFENSES.get(name), settings)
