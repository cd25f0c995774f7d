"""Shared pieces of the dataset readers: the ``DATASETS`` registry, load options and small helpers.

A reader is a function ``reader(arg, opts) -> Splits`` registered in :data:`DATASETS` under its format
name; ``arg`` is the part of the spec string after ``format:`` (a path, or ``key=value`` options).
Every reader returns images as uint8 ``N×H×W×3`` (RGB) with int64 labels, so the rest of advrbd never
sees a file format.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import BadInputError
from ..registry import Registry
from ..types import ImageData, Splits

log = logging.getLogger(__name__)

DATASETS: Registry = Registry("dataset")

#: File name endings the folder readers decode (compared lower-case).
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".webp")


@dataclass(frozen=True)
class LoadOptions:
    """Settings every reader receives (see :func:`advrbd.data.load_dataset`).

    resize:    side in pixels of the square images to produce (bilinear); None = the format's default
               (keep the stored size for most formats; 32 for GTSRB, 64 for Imagenette).
    skip_bad:  skip corrupt images and unreadable label rows with a logged warning instead of failing.
    download:  fetch the public archive when the files are absent (CIFAR only).
    cache_dir: folder of the decoded-array cache; None = ``$ADVRBD_CACHE`` or ``~/.cache/advrbd``.
    """

    resize: int | None = None
    skip_bad: bool = False
    download: bool = False
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.resize is not None and not (isinstance(self.resize, int) and 1 <= self.resize <= 4096):
            raise BadInputError(f"resize must be an integer side length in 1..4096, got {self.resize!r}")


Reader = Callable[[str, LoadOptions], Splits]


def existing_dir(arg: str, fmt: str) -> Path:
    """``arg`` as an absolute directory path, or a one-line error naming it."""
    if not arg:
        raise BadInputError(f"dataset spec '{fmt}:' needs a path, e.g. '{fmt}:/data/{fmt}'")
    path = Path(arg).expanduser().absolute()
    if not path.exists():
        raise BadInputError(f"dataset path {path} does not exist")
    if not path.is_dir():
        raise BadInputError(f"dataset path {path} is not a folder")
    return path


def is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTS)


def subdirs(folder: Path) -> list[str]:
    """Names of the visible sub-folders of ``folder``, sorted."""
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def image_files(folder: Path) -> list[str]:
    """Names of the image files directly in ``folder``, sorted by name (the sample order)."""
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if is_image_name(e.name) and e.is_file())


def read_lines(path: Path, encoding: str = "utf-8") -> list[str]:
    """The lines of a label file, or a one-line error naming it."""
    try:
        return path.read_text(encoding=encoding).splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise BadInputError(f"cannot read {path}: {e}") from None


def label_rows(path: Path, lines: Sequence[str], first_lineno: int, images_dir: Path,
               parse: Callable[[str], tuple[str, int]], skip_bad: bool) -> tuple[list[str], list[int], int]:
    """``(image paths, labels, skipped rows)`` of the data rows of a label file (GTSRB CSV, Tiny-ImageNet
    annotations); ``lines[0]`` is line ``first_lineno`` of ``path``; blank lines are passed over.

    ``parse(line) -> (file name, label)`` raises ``ValueError`` for a bad row; so does a file name that could
    leave ``images_dir`` (a path separator or a leading dot). A bad row is a :class:`BadInputError` naming the
    file and line, or a skip with ``skip_bad``.
    """
    files: list[str] = []
    labels: list[int] = []
    skipped = 0
    for lineno, line in enumerate(lines, start=first_lineno):
        if not line.strip():
            continue
        try:
            name, label = parse(line)
            if not name or "/" in name or "\\" in name or name.startswith("."):
                raise ValueError(f"bad file name {name!r}")
        except ValueError as e:
            if not skip_bad:
                raise BadInputError(f"{path}:{lineno}: unreadable row {line!r} ({e})") from None
            skipped += 1
            continue
        files.append(str(images_dir / name))
        labels.append(label)
    if skipped:
        log.warning("skipped %d unreadable row(s) of %s", skipped, path)
    return files, labels, skipped


def content_fingerprint(train: ImageData, test: ImageData) -> str:
    """16 hex digits of a sha256 over pixels, labels and class names of both splits.

    Depends on the data only, not on where it was read from, so a run manifest can tell whether two
    runs saw the same data.
    """
    h = hashlib.sha256()
    h.update("\n".join(train.classes).encode())
    for part in (train, test):
        h.update(repr(tuple(part.images.shape)).encode())
        h.update(part.images.contiguous().numpy().data)
        h.update(part.labels.contiguous().numpy().data)
    return h.hexdigest()[:16]


def make_splits(
    name: str,
    source: str,
    classes: Sequence[str],
    train: tuple[np.ndarray, np.ndarray, Sequence[str] | None],
    test: tuple[np.ndarray, np.ndarray, Sequence[str] | None],
) -> Splits:
    """Build :class:`Splits` from ``(images uint8 N×H×W×3, labels int N, paths)`` per split."""
    parts = []
    for split, (images, labels, paths) in (("train", train), ("test", test)):
        if len(images) == 0:
            raise BadInputError(f"{source}: the {split} split has no images")
        parts.append(
            ImageData(
                torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)),
                torch.from_numpy(np.asarray(labels, dtype=np.int64)),
                tuple(classes),
                tuple(paths) if paths is not None else None,
            )
        )
    tr, te = parts
    if tr.images.shape[1:] != te.images.shape[1:]:
        raise BadInputError(
            f"{source}: train images are {tuple(tr.images.shape[1:])} but test images are "
            f"{tuple(te.images.shape[1:])}; pass resize=N (--resize N)"
        )
    return Splits(tr, te, name=name, source=source, fingerprint=content_fingerprint(tr, te))


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear (antialiased) resize of uint8 ``N×H×W×C`` images to ``N×size×size×C`` uint8."""
    if images.shape[1] == size and images.shape[2] == size:
        return images
    out = np.empty((len(images), size, size, images.shape[3]), dtype=np.uint8)
    for s in range(0, len(images), 4096):  # chunks bound the float32 copy (4096 × 3 × 64² ≈ 200 MB max)
        x = torch.from_numpy(images[s : s + 4096]).permute(0, 3, 1, 2).float()
        y = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                            antialias=True)
        out[s : s + 4096] = y.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out
