"""Adaptive-Blend (Qi, Xie, Li, Wang & Mittal, 2023, "Revisiting the Assumption of Latent Separability
for Backdoor Defenses", ICLR).

Trigger: the Blend pattern (generated default, or e.g. ``trigger=hellokitty_32.png``) cut into a
``grid×grid`` = 4×4 grid of pieces. Each poison and cover image gets the blend on a random half of the
pieces (exactly 8 of 16, drawn per image) at the training opacity ``alpha`` = 0.15 (the low end of the
0.15–0.2 range: weaker, partial triggers are what keeps poisoned and clean samples close in the
model's latent space, the point of the attack). The test trigger is the full pattern at
``test_alpha`` = 0.2. Cover samples (cover rate 0.01) keep their labels, so a partial trigger alone
does not imply the target. Dirty label + cover, pixels in [0,1]; piece edges scale with H×W.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import ConfigError
from ..seeding import generator as make_generator
from . import triggers
from .base import Mode, PatternAttack, register


@register("adaptive_blend")
@dataclass
class AdaptiveBlend(PatternAttack):
    """Adaptive-Blend: blend on a random half of 4×4 pieces at α 0.15, full at α 0.2 (Qi et al., 2023)."""

    cover_rate: float = field(default=0.01, metadata={"doc": "cover count as a fraction of the whole training set"})
    alpha: float = field(default=0.15, metadata={"doc": "training-time (poison and cover) blend opacity"})
    test_alpha: float = field(default=0.2, metadata={"doc": "test-time blend opacity (full pattern)"})
    grid: int = field(default=4, metadata={"doc": "the pattern is cut into grid×grid pieces"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.test_alpha <= 1.0 or self.grid < 2:
            raise ConfigError(f"adaptive_blend: need 0 <= test_alpha <= 1 and grid >= 2, got {self.test_alpha}, {self.grid}")

    def default_trigger(self, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        return triggers.smooth_pattern(h, w), torch.ones(1, h, w)

    def piece_mask(self, n: int, h: int, w: int, generator: torch.Generator) -> torch.Tensor:
        """``N×1×H×W`` float masks, each the union of a random ``grid²//2`` of the pieces."""
        pieces = self.grid * self.grid
        order = torch.rand(n, pieces, generator=generator).argsort(dim=1)
        on = torch.zeros(n, pieces)
        on.scatter_(1, order[:, : pieces // 2], 1.0)
        return on[:, triggers.piece_ids(h, w, self.grid)][:, None]

    def apply_trigger(self, images: torch.Tensor, mode: Mode = "test", *, generator: torch.Generator | None = None) -> torch.Tensor:
        self._check_mode(mode)
        n, c, h, w = images.shape
        t, m = self.pattern(c, h, w, images.device)
        if mode == "test":
            return triggers.stamp(images, t, m, self.test_alpha)
        g = generator if generator is not None else make_generator(self.seed, self.name, mode)
        return triggers.stamp(images, t, m * self.piece_mask(n, h, w, g).to(images.device), self.alpha)
