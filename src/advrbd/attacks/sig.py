"""SIG (Barni, Kallas & Tondi, 2019, "A New Backdoor Attack in CNNs by Training Set Corruption Without
Label Poisoning").

Trigger: an additive horizontal sinusoid ``v(j) = δ·sin(2π·j·f/W)`` over columns j (same on every row
and channel), f = 6 periods across the width, then clamped to [0,1]. δ is in [0,1] pixel units; the
default 30/255 sits in the middle of the 20–40/255 range used by the paper and the toolkits: strong
enough that a clean-label poison of half a CIFAR-10 class is learned, faint enough to look like a
texture. Because the signal is defined per column fraction j/W it scales to any image size.

Clean label: poison is drawn only from images of the target class and their labels are unchanged. The
count is still ``round(rate·N)`` of the WHOLE set, capped at the target-class size with a warning.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import ConfigError
from ..types import ImageData
from . import triggers
from .base import Attack, Mode, register


@register("sig")
@dataclass
class SIG(Attack):
    """SIG: additive sinusoid, clean label (Barni et al., 2019)."""

    delta: float = field(default=30 / 255, metadata={"doc": "sinusoid amplitude in [0,1] pixel units"})
    freq: float = field(default=6.0, metadata={"doc": "periods across the image width"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.delta <= 1.0 or self.freq <= 0:
            raise ConfigError(f"sig: need 0 <= delta <= 1 and freq > 0, got delta={self.delta}, freq={self.freq}")

    def poison_pool(self, data: ImageData) -> torch.Tensor:
        return (data.labels == self.target).nonzero().flatten()

    def apply_trigger(self, images: torch.Tensor, mode: Mode = "test", *, generator: torch.Generator | None = None) -> torch.Tensor:
        self._check_mode(mode)
        _, _, h, w = images.shape
        memo = self._cache(("signal", h, w, str(images.device)))
        if not memo:
            memo["v"] = triggers.sinusoid(h, w, self.delta, self.freq).to(images.device)
        return (images + memo["v"]).clamp_(0, 1)
