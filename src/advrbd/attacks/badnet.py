"""BadNets (Gu, Dolan-Gavitt & Garg, 2017, "BadNets: Identifying Vulnerabilities in the Machine Learning
Model Supply Chain").

Trigger: a small white square stamped (α = 1) in the bottom-right corner: 3×3 pixels at rows/cols 29–31
of a 32×32 image, scaled with the image size (6×6 at 64×64). Dirty label: a seeded random
``round(rate·N)`` of the whole training set is stamped and relabelled to ``target``. Pixels in [0,1].
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import ConfigError
from . import triggers
from .base import PatternAttack, register


@register("badnet")
@dataclass
class BadNet(PatternAttack):
    """BadNets: white corner square, dirty label (Gu et al., 2017)."""

    patch_size: int = field(default=3, metadata={"doc": "side of the square in pixels at 32×32 (scaled with size)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.patch_size <= triggers.REF:
            raise ConfigError(f"badnet: patch_size must be in 1..{triggers.REF}, got {self.patch_size}")

    def default_trigger(self, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        return triggers.white_square(h, w, self.patch_size)
