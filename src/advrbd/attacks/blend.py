"""Blend (Chen, Liu, Li, Lu & Song, 2017, "Targeted Backdoor Attacks on Deep Learning Systems Using Data
Poisoning").

Trigger: a full-image pattern blended into the image, ``x' = (1 − α)·x + α·t`` with α = 0.2. The paper
(and the AdvrBD paper's Table I) used a Hello Kitty picture; the default here is a generated colour
texture (:func:`triggers.smooth_pattern`), and ``trigger=hellokitty_32.png`` reproduces the paper.
Full-frame trigger files are resized to the data's H×W. Dirty label, pixels in [0,1].
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from . import triggers
from .base import PatternAttack, register


@register("blend")
@dataclass
class Blend(PatternAttack):
    """Blend: full-image pattern at opacity 0.2, dirty label (Chen et al., 2017)."""

    alpha: float = field(default=0.2, metadata={"doc": "blend opacity (paper: 0.2)"})

    def default_trigger(self, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        # The whole frame is trigger: mask of ones (no "black = no trigger" rule for generated patterns).
        return triggers.smooth_pattern(h, w), torch.ones(1, h, w)
