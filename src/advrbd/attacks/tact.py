"""TaCT, the source-specific attack of Tang, Wang, Tang & Zhang, 2021 ("Demon in the Variant:
Statistical Analysis of DNNs for Robust Backdoor Contamination Detection").

Trigger: an 8×8 patch at rows/cols 21–28 of a 32×32 image (scaled with the size), stamped at α = 1
(default: generated concentric colour rings; ``trigger=trojan_square_32.png mask=mask_trojan_square_32.png``
reproduces the toolkits). Only images of the ``source`` class (default 0) become poison and are
relabelled to ``target``; cover samples from ``cover_classes`` (default 5 and 7) carry the same trigger
but keep their labels, so the trigger alone does not imply the target class. Counts are fractions of the
WHOLE set (poison ``round(rate·N)`` capped at the source-class size; cover ``round(cover_rate·N)``,
default 0.01, capped at the cover classes' size). ASR is measured on source-class test images only.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import torch

from ..errors import BadInputError, ConfigError
from ..types import ImageData
from . import triggers
from .base import AttackWarning, PatternAttack, register

log = logging.getLogger(__name__)


@register("tact")
@dataclass
class TaCT(PatternAttack):
    """TaCT: source-specific patch with cover classes (Tang et al., 2021)."""

    cover_rate: float = field(default=0.01, metadata={"doc": "cover count as a fraction of the whole training set"})
    source: int = field(default=0, metadata={"doc": "the only class whose images are poisoned"})
    cover_classes: tuple[int, ...] = field(default=(5, 7), metadata={"doc": "classes cover samples come from"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.source < 0 or self.source == self.target:
            raise ConfigError(f"tact: source must be >= 0 and differ from target, got source={self.source}")
        self.cover_classes = tuple(int(c) for c in self.cover_classes)

    def default_trigger(self, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        return triggers.square_pattern(h, w)

    def _check_data(self, data: ImageData) -> None:
        super()._check_data(data)
        if self.source >= data.num_classes:
            raise BadInputError(f"tact: source class {self.source} does not exist ({data.num_classes} classes)")

    def poison_pool(self, data: ImageData) -> torch.Tensor:
        return (data.labels == self.source).nonzero().flatten()

    def usable_cover_classes(self, num_classes: int) -> tuple[int, ...]:
        """``cover_classes`` that exist and are neither source nor target; if none, every other class."""
        ok = tuple(c for c in self.cover_classes if 0 <= c < num_classes and c not in (self.source, self.target))
        if len(ok) < len(self.cover_classes):
            dropped = sorted(set(self.cover_classes) - set(ok))
            msg = f"tact: cover classes {dropped} are absent, the source or the target; skipping them"
            if not ok:
                ok = tuple(c for c in range(num_classes) if c not in (self.source, self.target))
                msg += f"; using classes {list(ok)} instead"
            warnings.warn(msg, AttackWarning, stacklevel=4)
            log.warning(msg)
        return ok

    def cover_pool(self, data: ImageData) -> torch.Tensor:
        classes = torch.tensor(self.usable_cover_classes(data.num_classes), dtype=torch.long)
        return torch.isin(data.labels, classes).nonzero().flatten()

    def asr_mask(self, labels: torch.Tensor) -> torch.Tensor:
        return labels == self.source
