"""The attack contract: a small dataclass of settings plus batched trigger application.

Every attack is poison-only (SPEC §4): it changes some training images and labels and nothing else.
Subclasses implement :meth:`Attack.apply_trigger` and override selection or labelling only where their
threat model differs (SIG: clean-label pool; TaCT: source-class pool and cover classes).

Conventions: images in [0,1] float NCHW at ``apply_trigger``; uint8 NHWC in :class:`ImageData`;
``rate`` and ``cover_rate`` are fractions of the WHOLE training set (count = ``round(rate·N)``); masks
True = poisoned / cover; indices refer to positions in the training set given to :meth:`poison`.
"""
from __future__ import annotations

import dataclasses
import logging
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch

from ..config import build
from ..errors import BadInputError, ConfigError
from ..registry import Registry
from ..seeding import generator
from ..types import ImageData, PoisonedDataset
from . import triggers

log = logging.getLogger(__name__)

ATTACKS: Registry = Registry("attack")

Mode = Literal["poison", "cover", "test"]
MODES = ("poison", "cover", "test")


class AttackWarning(UserWarning):
    """An attack setting could not be honoured as given (the attack goes on with a documented fallback)."""


class RateCapWarning(AttackWarning):
    """A poison or cover count could not be met (pool too small) and was capped."""


def register(name: str):
    """Class decorator: set ``cls.name`` and add the class to :data:`ATTACKS`."""

    def deco(cls):
        cls.name = name
        return ATTACKS.register(name)(cls)

    return deco


def create_attack(name: str, **settings: Any) -> "Attack":
    """Attack ``name`` with ``settings`` coerced to the field types; unknown keys raise ConfigError."""
    return build(ATTACKS.get(name), settings)


def to_uint8_nhwc(x: torch.Tensor) -> torch.Tensor:
    """Float [0,1] NCHW -> uint8 NHWC on the CPU (rounded, as ImageData stores it)."""
    return (x.clamp(0, 1) * 255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu()


@dataclass
class Attack:
    """Base of every attack. Subclasses are dataclasses of settings; constructors do no work."""

    name: ClassVar[str] = ""
    #: TrainConfig settings the victim's training must use on this attack's data (physical: variation).
    train_overrides: ClassVar[dict[str, Any]] = {}
    #: float images converted per batch in poison()/make_asr_set() (bounds memory at large sizes).
    batch_size: ClassVar[int] = 1024

    target: int = field(default=1, metadata={"doc": "class the backdoor maps to"})
    rate: float = field(default=0.05, metadata={"doc": "poison count as a fraction of the whole training set"})
    cover_rate: float = field(default=0.0, metadata={"doc": "cover count as a fraction of the whole training set"})
    seed: int = field(default=0, metadata={"doc": "seed of selection and trigger randomness"})

    def __post_init__(self) -> None:
        if self.target < 0:
            raise ConfigError(f"{self.name}: target must be >= 0, got {self.target}")
        for key in ("rate", "cover_rate"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"{self.name}: {key} must be a fraction in [0, 1], got {getattr(self, key)}")
        if self.rate + self.cover_rate > 1.0:
            raise ConfigError(f"{self.name}: rate + cover_rate must be <= 1")

    # ------------------------------------------------------------------ what subclasses implement
    def apply_trigger(self, images: torch.Tensor, mode: Mode = "test", *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Triggered copy of a float [0,1] NCHW batch (input untouched), same shape and device.

        mode: "poison" (training-time poison), "cover" (training-time cover variant), "test" (the
        trigger used to measure ASR). ``generator`` drives any per-sample randomness (CPU generator).
        """
        raise NotImplementedError

    def poison_pool(self, data: ImageData) -> torch.Tensor:
        """Positions poison may be drawn from (default: the whole set)."""
        return torch.arange(len(data))

    def cover_pool(self, data: ImageData) -> torch.Tensor:
        """Positions cover samples may be drawn from (default: the whole set; poison is removed later)."""
        return torch.arange(len(data))

    def asr_mask(self, labels: torch.Tensor) -> torch.Tensor:
        """Which test samples (by TRUE label) count for ASR: default every class except the target."""
        return labels != self.target

    # ------------------------------------------------------------------ shared machinery
    def params(self) -> dict[str, Any]:
        """All settings (dataclass fields) as a plain dict; ``create_attack(name, **params)`` rebuilds."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def _check_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")

    def _check_data(self, data: ImageData) -> None:
        if self.target >= data.num_classes:
            raise BadInputError(f"{self.name}: target class {self.target} does not exist ({data.num_classes} classes)")

    def _count(self, rate: float, n: int, available: int, what: str) -> int:
        want = int(round(rate * n))
        if want > available:
            msg = (f"{self.name}: {what} rate {rate} asks for {want} of {n} samples but only {available} "
                   f"are eligible; using {available}")
            warnings.warn(msg, RateCapWarning, stacklevel=4)
            log.warning(msg)
            return available
        return want

    def _cache(self, key: tuple) -> dict:
        """Per-instance memo for triggers (keyed by the settings, so editing a field invalidates it)."""
        settings = repr(self)
        store = self.__dict__.get("_trigger_cache")
        if store is None or store[0] != settings:
            store = (settings, {})
            self.__dict__["_trigger_cache"] = store
        return store[1].setdefault(key, {})

    def select(self, data: ImageData) -> tuple[torch.Tensor, torch.Tensor]:
        """``(poison_idx, cover_idx)``: seeded random disjoint subsets of the pools, sorted int64.

        Counts are ``round(rate·N)`` and ``round(cover_rate·N)`` with N the whole set, capped (with a
        :class:`RateCapWarning`) when a pool is smaller.
        """
        self._check_data(data)
        n = len(data)
        g = generator(self.seed, self.name, "select")
        pool = self.poison_pool(data)
        n_p = self._count(self.rate, n, len(pool), "poison")
        poison = pool[torch.randperm(len(pool), generator=g)[:n_p]]
        taken = torch.zeros(n, dtype=torch.bool)
        taken[poison] = True
        cpool = self.cover_pool(data)
        cpool = cpool[~taken[cpool]]
        n_c = self._count(self.cover_rate, n, len(cpool), "cover")
        cover = cpool[torch.randperm(len(cpool), generator=g)[:n_c]]
        return poison.sort().values, cover.sort().values

    def triggered(self, images: torch.Tensor, mode: Mode, generator: torch.Generator | None = None) -> torch.Tensor:
        """Triggered copy of uint8 NHWC ``images`` (the input is untouched), converted in batches."""
        out = images.clone()
        for s in range(0, len(out), self.batch_size):
            x = out[s : s + self.batch_size].permute(0, 3, 1, 2).float().div_(255.0)
            out[s : s + self.batch_size] = to_uint8_nhwc(self.apply_trigger(x, mode, generator=generator))
        return out

    def poison(self, data: ImageData) -> PoisonedDataset:
        """Poison a clean training set: triggered images at the selected positions; poison labels ->
        ``target``, cover labels kept. Ground truth (true labels, masks, params) travels along."""
        poison_idx, cover_idx = self.select(data)
        images, labels = data.images.clone(), data.labels.clone()
        for mode, idx in (("poison", poison_idx), ("cover", cover_idx)):
            if len(idx):
                images[idx] = self.triggered(data.images[idx], mode, generator(self.seed, self.name, mode))
        labels[poison_idx] = self.target
        n = len(data)
        poison_mask = torch.zeros(n, dtype=torch.bool)
        poison_mask[poison_idx] = True
        cover_mask = torch.zeros(n, dtype=torch.bool)
        cover_mask[cover_idx] = True
        log.info("%s: %d poison, %d cover of %d samples (target %d)", self.name, len(poison_idx), len(cover_idx), n, self.target)
        return PoisonedDataset(
            data=dataclasses.replace(data, images=images, labels=labels),
            true_labels=data.labels.clone(),
            poison_mask=poison_mask,
            cover_mask=cover_mask,
            attack=self.name,
            params=self.params(),
        )

    def make_asr_set(self, test: ImageData) -> ImageData:
        """Test-time-triggered copies of the test samples that count for ASR (:meth:`asr_mask`), with
        their TRUE labels; ASR = % of them predicted as ``self.target``."""
        self._check_data(test)
        idx = self.asr_mask(test.labels).nonzero().flatten()
        sub = test.subset(idx)
        if not len(idx):
            return sub
        return dataclasses.replace(sub, images=self.triggered(sub.images, "test", generator(self.seed, self.name, "test")))


@dataclass
class PatternAttack(Attack):
    """An attack whose trigger is one pattern + mask stamped with opacity ``alpha`` (BadNets, Blend,
    PhysicalBA, TaCT). Subclasses give the procedural default in :meth:`default_trigger`."""

    trigger: str | None = field(default=None, metadata={"doc": "trigger image file (default: generated)"})
    mask: str | None = field(default=None, metadata={"doc": "mask image file (default: non-black trigger pixels)"})
    alpha: float = field(default=1.0, metadata={"doc": "trigger opacity in [0, 1]"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"{self.name}: alpha must be in [0, 1], got {self.alpha}")
        if self.mask and not self.trigger:
            raise ConfigError(f"{self.name}: mask given without trigger")

    def default_trigger(self, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(3×H×W pattern, 1×H×W mask)`` used when no trigger file is given."""
        raise NotImplementedError

    def pattern(self, c: int, h: int, w: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """The trigger at this image size: ``(C×H×W pattern, 1×H×W mask)`` on ``device``, cached."""
        memo = self._cache(("pattern", c, h, w, str(device)))
        if not memo:
            if self.trigger:
                t, m = triggers.load_trigger_and_mask(self.trigger, self.mask, (h, w), c)
            else:
                t, m = self.default_trigger(h, w)
                t = triggers.to_channels(t, c)
            memo["v"] = (t.to(device), m.to(device))
        return memo["v"]

    def apply_trigger(self, images: torch.Tensor, mode: Mode = "test", *, generator: torch.Generator | None = None) -> torch.Tensor:
        self._check_mode(mode)
        _, c, h, w = images.shape
        t, m = self.pattern(c, h, w, images.device)
        return triggers.stamp(images, t, m, self.alpha)
