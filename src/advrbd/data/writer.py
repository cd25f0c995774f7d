"""Writing image sets as an ImageFolder tree of lossless PNGs (e.g. a poisoned training set).

Layout: ``OUT/<split>/<class>/<NNNNN>.png`` where ``NNNNN`` is the sample's position in its split,
zero-padded to one width per split. The ImageFolder reader orders samples class by class and then by
file name, so reading the tree back gives the same pixels and labels with the samples grouped by
class (class-major) and in their original order within each class. :func:`write_imagefolder`
returns, per split, the permutation ``perm`` with ``read_back[j] == original[perm[j]]``.
"""
from __future__ import annotations

import logging
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import torch
from PIL import Image

from ..errors import BadInputError
from ..types import ImageData, Splits
from .decode import num_workers
from .imagefolder import CLASSES_FILE

log = logging.getLogger(__name__)

SplitsLike = Splits | Mapping[str, ImageData] | Iterable[tuple[str, ImageData]]


def _pairs(splits_or_pairs: SplitsLike) -> list[tuple[str, ImageData]]:
    if isinstance(splits_or_pairs, Splits):
        return [("train", splits_or_pairs.train), ("test", splits_or_pairs.test)]
    if isinstance(splits_or_pairs, Mapping):
        return list(splits_or_pairs.items())
    return [(name, data) for name, data in splits_or_pairs]


def _check_name(name: str, what: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\\" in name or name != name.strip() or "\n" in name:
        raise BadInputError(f"{what} {name!r} cannot be used as a folder name")


def write_imagefolder(
    splits_or_pairs: SplitsLike, out_dir: str | Path, *, overwrite: bool = False
) -> dict[str, torch.Tensor]:
    """Write each split as ``out_dir/<split>/<class>/<NNNNN>.png`` (lossless); returns the read-back orders.

    splits_or_pairs: a :class:`Splits` (written as ``train`` and ``test``), a ``{split: ImageData}``
                     mapping or ``(split, ImageData)`` pairs. All splits must share one class list.
    out_dir:         must be absent or empty unless ``overwrite`` (which replaces the split folders).
    returns:         ``{split: perm}``, int64 ``N`` per split: the j-th image read back by
                     ``load_dataset("imagefolder:out_dir")`` is original sample ``perm[j]``
                     (``perm`` = stable argsort of the labels).

    Class folders are named after the classes; if the class names are not in sorted order a
    ``classes.txt`` fixing the order is written too, so labels read back unchanged. Single-channel
    images are written as grayscale PNGs and read back as RGB. Every class of the first split must
    have at least one sample (an ImageFolder cannot hold an empty class).
    """
    pairs = _pairs(splits_or_pairs)
    if not pairs:
        raise BadInputError("write_imagefolder: nothing to write")
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise BadInputError(f"output path {out} exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise BadInputError(
                f"output folder {out} is not empty; choose another or pass overwrite=True (--overwrite)"
            )
        for name, _ in pairs:
            shutil.rmtree(out / name, ignore_errors=True)
        (out / CLASSES_FILE).unlink(missing_ok=True)
    classes = pairs[0][1].classes
    for name, data in pairs:
        _check_name(name, "split name")
        if data.classes != classes:
            raise BadInputError(f"split {name!r} has other classes than split {pairs[0][0]!r}")
    for c in classes:
        _check_name(c, "class name")
    if len(set(classes)) != len(classes):
        raise BadInputError("class names must be unique to be written as folders")
    empty = [classes[k] for k in range(len(classes)) if not bool((pairs[0][1].labels == k).any())]
    if empty:
        raise BadInputError(
            f"class {empty[0]!r} has no samples in split {pairs[0][0]!r}; an ImageFolder cannot hold it"
        )
    out.mkdir(parents=True, exist_ok=True)
    if list(classes) != sorted(classes):
        (out / CLASSES_FILE).write_text("".join(f"{c}\n" for c in classes), encoding="utf-8")

    jobs: list[tuple[np.ndarray, Path]] = []
    perms: dict[str, torch.Tensor] = {}
    for name, data in pairs:
        width = max(5, len(str(len(data) - 1)))
        images = data.images.numpy()
        labels = data.labels.tolist()
        for k in sorted(set(labels)):
            (out / name / classes[k]).mkdir(parents=True, exist_ok=True)
        jobs += [(images[i], out / name / classes[y] / f"{i:0{width}d}.png") for i, y in enumerate(labels)]
        perms[name] = torch.argsort(data.labels, stable=True)

    def save(job: tuple[np.ndarray, Path]) -> None:
        arr, path = job
        img = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
        img.save(path, format="PNG", compress_level=6)

    with ThreadPoolExecutor(num_workers(), thread_name_prefix="advrbd-png") as pool:
        for _ in pool.map(save, jobs):
            pass
    log.info("wrote %d PNG images to %s", len(jobs), out)
    return perms

