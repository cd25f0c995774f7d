"""Adaptive-Patch (Qi, Xie, Li, Wang & Mittal, 2023, "Revisiting the Assumption of Latent Separability
for Backdoor Defenses", ICLR).

Trigger: ``k`` = 4 small patches stamped at α = 1 (paper: the four quarters of a Firefox logo,
``trigger=firefox_corner_split_1_32.png,...,firefox_corner_split_4_32.png``; default: the four
quarter sectors of the generated logo of :func:`triggers.logo_pieces`, at the same corner position).
Each poison image carries ONE of the k patches and so does each cover image; both groups are split
equally among the patches (counts differ by at most one). The test trigger stamps all k together.
Covers (cover rate 0.01) keep their labels. Dirty label + cover, pixels in [0,1], any H×W.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import BadInputError, ConfigError
from ..seeding import generator as make_generator
from . import triggers
from .base import Attack, Mode, register


def _files(spec: str | None) -> list[str]:
    return [s.strip() for s in spec.split(",") if s.strip()] if spec else []


@register("adaptive_patch")
@dataclass
class AdaptivePatch(Attack):
    """Adaptive-Patch: one of k patches per training image, all k at test time (Qi et al., 2023)."""

    cover_rate: float = field(default=0.01, metadata={"doc": "cover count as a fraction of the whole training set"})
    trigger: str | None = field(default=None, metadata={"doc": "comma-separated list of k patch image files"})
    mask: str | None = field(default=None, metadata={"doc": "comma-separated list of k mask files (optional)"})
    k: int = field(default=4, metadata={"doc": "number of patches"})
    alpha: float = field(default=1.0, metadata={"doc": "patch opacity"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k < 1 or not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"adaptive_patch: need k >= 1 and 0 <= alpha <= 1, got k={self.k}, alpha={self.alpha}")
        files, masks = _files(self.trigger), _files(self.mask)
        if files and len(files) != self.k:
            raise ConfigError(f"adaptive_patch: k={self.k} but {len(files)} trigger files given")
        if masks and len(masks) != len(files):
            raise ConfigError(f"adaptive_patch: {len(masks)} mask files for {len(files)} trigger files")
        # Whole batches of a multiple of k keep the split among the patches exact (see apply_trigger).
        self.batch_size = max(self.k, Attack.batch_size - Attack.batch_size % self.k)

    def patches(self, c: int, h: int, w: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """``(k×C×H×W patterns, k×1×H×W masks)`` at this image size, cached."""
        memo = self._cache(("patches", c, h, w, str(device)))
        if not memo:
            files, masks = _files(self.trigger), _files(self.mask)
            if files:
                pairs = [triggers.load_trigger_and_mask(f, masks[i] if masks else None, (h, w), c) for i, f in enumerate(files)]
                t = torch.stack([p for p, _ in pairs])
                m = torch.stack([q for _, q in pairs])
            else:
                t, m = triggers.logo_pieces(h, w, self.k)
                t = torch.stack([triggers.to_channels(p, c) for p in t])
            if float(m.sum()) == 0:
                raise BadInputError(f"adaptive_patch: the patches are empty at {h}×{w}")
            memo["v"] = (t.to(device), m.to(device))
        return memo["v"]

    def assignment(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Patch index per image: a random permutation of ``0,1,..,k−1,0,1,..`` (balanced)."""
        return torch.randperm(n, generator=generator) % self.k

    def apply_trigger(self, images: torch.Tensor, mode: Mode = "test", *, generator: torch.Generator | None = None) -> torch.Tensor:
        self._check_mode(mode)
        n, c, h, w = images.shape
        t, m = self.patches(c, h, w, images.device)
        if mode == "test":
            out = images
            for i in range(self.k):  # k stamps (k is small), not a loop over samples
                out = triggers.stamp(out, t[i], m[i], self.alpha)
            return out
        g = generator if generator is not None else make_generator(self.seed, self.name, mode)
        which = self.assignment(n, g).to(images.device)
        return triggers.stamp(images, t[which], m[which], self.alpha)
