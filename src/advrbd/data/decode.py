"""Decoding image files into one uint8 array with a thread pool.

Pillow releases the GIL while it decodes, so threads scale with cores without the cost of sending
arrays between processes; each worker writes its chunk straight into the shared output array.
Measured on 2 shared cores: about 6,000 CIFAR-size JPEGs per second.
"""
from __future__ import annotations

import io
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..errors import BadInputError
from ..types import Splits

log = logging.getLogger(__name__)

_CHUNK = 256  # images per pool task: large enough to amortise scheduling, small enough to balance


def num_workers() -> int:
    """Decoding threads: one per usable core, at most 16."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(16, cores))


def decode_image(path: str | Path, resize: int | None = None) -> np.ndarray:
    """One image file as uint8 ``H×W×3`` RGB (grayscale, palette and RGBA are converted).

    ``img.load()`` forces the full decode so a truncated file fails here, not later. With ``resize``
    the image is resized to ``resize×resize`` with bilinear filtering.
    """
    with open(path, "rb") as f:  # one read: Pillow's header parsing does dozens of small reads
        data = f.read()
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        if img.mode != "RGB":
            img = img.convert("RGB")
        if resize is not None and img.size != (resize, resize):
            img = img.resize((resize, resize), Image.BILINEAR)
        return np.asarray(img, dtype=np.uint8)


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def decode_files(
    paths: Sequence[str], resize: int | None = None, skip_bad: bool = False, workers: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``paths`` into ``(images uint8 M×H×W×3, kept int64 M)``.

    ``kept`` lists the positions in ``paths`` that were decoded (all of them unless ``skip_bad``).
    Without ``resize`` every image must have the size of the first one; a mismatch is a
    :class:`BadInputError` naming two example files and their sizes. A corrupt or truncated file is a
    :class:`BadInputError` naming it, or with ``skip_bad`` a skip counted in a logged warning.
    """
    n = len(paths)
    if n == 0:
        return np.zeros((0, resize or 1, resize or 1, 3), np.uint8), np.zeros(0, np.int64)
    bad: dict[int, str] = {}
    first, start = None, 0
    for start, p in enumerate(paths):  # the first good image fixes the output size
        try:
            first = decode_image(p, resize)
            break
        except Exception as e:  # noqa: BLE001 - any decoder failure means a bad file
            bad[start] = _describe(e)
            if not skip_bad:
                break
    if first is None or (bad and not skip_bad):
        _raise_bad(paths, bad, skip_bad)
    h, w = first.shape[:2]
    out = np.empty((n, h, w, 3), dtype=np.uint8)
    out[start] = first
    mismatch: dict[int, tuple[int, int]] = {}

    def work(lo: int, hi: int) -> tuple[dict[int, str], dict[int, tuple[int, int]]]:
        errs, sizes = {}, {}
        for i in range(lo, hi):
            try:
                arr = decode_image(paths[i], resize)
            except Exception as e:  # noqa: BLE001
                errs[i] = _describe(e)
                continue
            if arr.shape[:2] != (h, w):
                sizes[i] = (arr.shape[1], arr.shape[0])
                continue
            out[i] = arr
        return errs, sizes

    bounds = [(lo, min(n, lo + _CHUNK)) for lo in range(start + 1, n, _CHUNK)]
    nw = workers or num_workers()
    if nw > 1 and len(bounds) > 1:
        with ThreadPoolExecutor(nw, thread_name_prefix="advrbd-decode") as pool:
            results = list(pool.map(lambda b: work(*b), bounds))
    else:
        results = [work(*b) for b in bounds]
    for errs, sizes in results:
        bad.update(errs)
        mismatch.update(sizes)
    if mismatch:
        i = min(mismatch)
        raise BadInputError(
            f"images have different sizes: {paths[start]} is {w}×{h} but {paths[i]} is "
            f"{mismatch[i][0]}×{mismatch[i][1]} ({len(mismatch)} files differ); pass resize=N (--resize N)"
        )
    if bad:
        _raise_bad(paths, bad, skip_bad)
        kept = np.setdiff1d(np.arange(n), np.fromiter(bad, np.int64, len(bad)))
        return out[kept], kept
    return out, np.arange(n)


def _raise_bad(paths: Sequence[str], bad: dict[int, str], skip_bad: bool) -> None:
    """Raise for the first bad file unless skipping; with ``skip_bad`` log how many were skipped."""
    i = min(bad)
    if not skip_bad:
        more = f" ({len(bad) - 1} more bad files)" if len(bad) > 1 else ""
        raise BadInputError(
            f"cannot decode image {paths[i]}: {bad[i]}{more}; fix or remove it, or pass skip_bad=True (--skip-bad)"
        )
    if len(bad) == len(paths):
        raise BadInputError(f"no image could be decoded; the first is {paths[i]}: {bad[i]}")
    log.warning("skipped %d corrupt image(s) of %d, e.g. %s: %s", len(bad), len(paths), paths[i], bad[i])


def decode_splits(
    name: str,
    source: Path,
    classes: Sequence[str],
    train: tuple[Sequence[str], Sequence[int]],
    test: tuple[Sequence[str], Sequence[int]],
    resize: int | None,
    skip_bad: bool,
) -> tuple[Splits, int]:
    """Decode the ``(files, labels)`` of both splits in one pass; returns ``(splits, skipped images)``.

    Both splits go through one :func:`decode_files` call so that a size mismatch between them is
    reported like one within a split.
    """
    from .base import make_splits

    files = list(train[0]) + list(test[0])
    labels = np.asarray(list(train[1]) + list(test[1]), dtype=np.int64)
    images, kept = decode_files(files, resize, skip_bad)
    k = int(np.searchsorted(kept, len(train[0])))  # kept is sorted: train samples come first
    parts = []
    for sl in (slice(0, k), slice(k, len(kept))):  # slices are views: no copy of the pixels
        idx = kept[sl]
        parts.append((images[sl], labels[idx], [files[i] for i in idx]))
    splits = make_splits(name, str(source), classes, parts[0], parts[1])
    return splits, len(files) - len(kept)
