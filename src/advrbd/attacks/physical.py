"""PhysicalBA (Li, Zhai, Wu, Jiang, Li & Xia, 2021, "Backdoor Attack in the Physical World").

Trigger: a logo patch stamped at α = 1 (paper: a Firefox logo; default here: a generated round logo at
the same place as the toolkits' ``firefox_corner_32.png``, a 13×13 disc at rows 1–13, cols 18–30 of a
32×32 image, scaled with the size). What makes it "physical" is training: the victim trains with
random flips, colour jitter and affine transforms of every image so the backdoor survives them; the
attack therefore declares ``train_overrides = {"physical": True}`` (see ``TrainConfig.physical`` and
``advrbd.train.augment.physical_variation``). The test trigger is the plain stamp, without variation.
Dirty label, pixels in [0,1].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from . import triggers
from .base import PatternAttack, register


@register("physical")
@dataclass
class Physical(PatternAttack):
    """PhysicalBA: logo patch + physical variation during the victim's training (Li et al., 2021)."""

    train_overrides: ClassVar[dict[str, Any]] = {"physical": True}

    def default_trigger(self, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        return triggers.logo_patch(h, w)
