"""Core typed values shared by every part of advrbd.

Conventions (DESIGN.md): images are uint8 ``N×H×W×C`` in memory and float32 ``[0,1]`` ``N×C×H×W`` at API
boundaries; masks are True = poison / suspected; indices always refer to the full training set.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import torch

from .errors import BadInputError


@dataclass(frozen=True)
class ImageData:
    """A labelled image set held in memory.

    images:  uint8 tensor ``N×H×W×C`` (C = 3 or 1), pixel values 0..255.
    labels:  int64 tensor ``N``, each in ``[0, len(classes))``.
    classes: class names, index = label.
    paths:   per-sample source path (or ``None`` for generated data).
    index:   int64 ``N``: position of each sample in the parent set it was cut from (identity if none).
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    paths: tuple[str, ...] | None = None
    index: torch.Tensor | None = None

    def __post_init__(self) -> None:
        for name in ("images", "labels"):  # numpy arrays are welcome: shared memory, no copy
            v = getattr(self, name)
            if not isinstance(v, torch.Tensor) and hasattr(v, "__array__"):
                import numpy as np

                object.__setattr__(self, name, torch.from_numpy(np.ascontiguousarray(v)))
        if not isinstance(self.images, torch.Tensor) or self.images.dtype != torch.uint8 or self.images.ndim != 4:
            got = (f"{self.images.dtype} tensor of shape {tuple(self.images.shape)}"
                   if isinstance(self.images, torch.Tensor) else type(self.images).__name__)
            raise BadInputError(f"ImageData images must be a uint8 tensor N×H×W×C, got a {got}; for float or "
                                f"N×C×H×W input use advrbd.as_image_data(images, labels)")
        n = self.images.shape[0]
        if self.labels.shape != (n,):
            raise BadInputError(f"labels must have shape ({n},), got {tuple(self.labels.shape)}")
        if self.labels.dtype != torch.int64:
            object.__setattr__(self, "labels", self.labels.long())
        if n and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.classes)):
            raise BadInputError(
                f"labels out of range: found {int(self.labels.min())}..{int(self.labels.max())} "
                f"for {len(self.classes)} classes"
            )
        if self.paths is not None and len(self.paths) != n:
            raise BadInputError(f"paths has {len(self.paths)} entries for {n} images")
        if self.index is None:
            object.__setattr__(self, "index", torch.arange(n))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        _, h, w, c = self.images.shape
        return int(c), int(h), int(w)

    def subset(self, idx: torch.Tensor | Sequence[int]) -> "ImageData":
        """Samples at positions ``idx`` (their ``index`` keeps pointing into the parent set)."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        paths = tuple(self.paths[i] for i in idx.tolist()) if self.paths is not None else None
        return ImageData(self.images[idx], self.labels[idx], self.classes, paths, self.index[idx])

    def with_labels(self, labels: torch.Tensor) -> "ImageData":
        return replace(self, labels=labels.long())

    def float_nchw(self, idx: torch.Tensor | None = None, device: str | torch.device = "cpu") -> torch.Tensor:
        """Float32 ``[0,1]`` NCHW copy of the images (all, or positions ``idx``)."""
        x = self.images if idx is None else self.images[idx]
        return x.to(device).permute(0, 3, 1, 2).float().div_(255.0)

    @staticmethod
    def from_float(x: torch.Tensor, labels: torch.Tensor, classes: Sequence[str], **kw: Any) -> "ImageData":
        """Build from float ``[0,1]`` NCHW images (rounded to uint8)."""
        u8 = (x.detach().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu()
        return ImageData(u8, labels.cpu().long(), tuple(classes), **kw)


@dataclass(frozen=True)
class Splits:
    """What a dataset spec loads to: a training set and a test set with the same classes."""

    train: ImageData
    test: ImageData
    name: str = ""
    source: str = ""
    fingerprint: str = ""


@dataclass(frozen=True)
class PoisonedDataset:
    """A training set after an attack, with ground truth.

    data:        the training set as the victim receives it (poisoned images, given labels).
    true_labels: int64 ``N`` labels before the attack.
    poison_mask: bool ``N``, True = the sample carries the trigger with the attacker's label.
    cover_mask:  bool ``N``, True = cover sample (trigger variant, label kept). Disjoint from poison_mask.
    """

    data: ImageData
    true_labels: torch.Tensor
    poison_mask: torch.Tensor
    cover_mask: torch.Tensor
    attack: str
    params: dict[str, Any] = field(default_factory=dict)

    def public(self) -> ImageData:
        """The view a defense may see: images and given labels, no ground truth."""
        return self.data

    @property
    def poison_indices(self) -> torch.Tensor:
        return self.poison_mask.nonzero().flatten()

    @property
    def cover_indices(self) -> torch.Tensor:
        return self.cover_mask.nonzero().flatten()


@dataclass(frozen=True)
class DefenseResult:
    """What a defense returns.

    model:      the final (defended) model, or None for pure detectors.
    scores:     float ``N`` per training sample, higher = more suspicious (None if the defense scores nothing).
    suspected:  bool ``N``, True = flagged as poisoned (None if the defense flags nothing).
    relabels:   int64 ``N`` suggested label per sample (given label where unchanged), or None.
    threshold:  score threshold used for ``suspected`` where one exists.
    history:    per-round records (dicts), e.g. AdvrBD enhancement rounds.
    info:       anything else worth keeping (timings, settings, counts).
    """

    model: torch.nn.Module | None
    scores: torch.Tensor | None = None
    suspected: torch.Tensor | None = None
    relabels: torch.Tensor | None = None
    threshold: float | None = None
    history: tuple[dict[str, Any], ...] = ()
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalResult:
    """Model metrics in percent with the set sizes they were measured on (ASR None without an attack)."""

    acc: float
    n_test: int
    asr: float | None = None
    n_asr: int | None = None
