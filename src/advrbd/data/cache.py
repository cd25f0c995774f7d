"""On-disk cache of decoded datasets as uncompressed ``.npz`` files (numpy arrays only, no pickle).

The key is a sha256 of (cache version, format, absolute source path, resize, skip_bad) and the sorted
list of ``(relative path, size, mtime_ns)`` of every file under the source folder, so adding, removing
or touching any file makes a new key. Listing and stat-ing 60,000 files takes about 0.3 s; reading the
cached 60,000×32×32×3 array back takes well under a second, against ~10 s to decode the JPEGs again.

Cache files are named ``<format>-<source hash>-<content key>.npz``; writing a new one for a source
removes that source's older ones. Writes go to a temporary file first and are moved into place with
``os.replace``, so a crash never leaves a half-written cache; an unreadable cache file is ignored
(with a warning) and rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..io import atomic_writer
from ..types import ImageData, Splits
from .base import LoadOptions

log = logging.getLogger(__name__)

CACHE_VERSION = 1
_SPLITS = ("train", "test")


def default_cache_dir() -> Path:
    """``$ADVRBD_CACHE`` if set, else ``~/.cache/advrbd``."""
    env = os.environ.get("ADVRBD_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "advrbd"


def list_files(root: Path, exclude: Path | None = None) -> list[tuple[str, int, int]]:
    """Sorted ``(path relative to root, size in bytes, mtime in ns)`` of every file under ``root``.

    Symlinked folders are followed once (a visited set stops loops); ``exclude`` (the cache folder,
    if it lies inside ``root``) is left out so writing the cache does not change the key.
    """
    out: list[tuple[str, int, int]] = []
    prefix = len(str(root)) + 1
    stack, seen = [str(root)], set()
    if exclude is not None and exclude.is_dir():
        st = os.stat(exclude)
        seen.add((st.st_dev, st.st_ino))  # compared by inode, so symlinked spellings match too
    while stack:
        folder = stack.pop()
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        with os.scandir(folder) as it:
            for e in it:
                if e.is_dir():
                    stack.append(e.path)
                elif e.is_file():
                    s = e.stat()
                    out.append((e.path[prefix:], s.st_size, s.st_mtime_ns))
    out.sort()
    return out


def cache_key(fmt: str, root: Path, opts: LoadOptions, cache_dir: Path) -> tuple[str, str]:
    """``(source hash, content key)``: hex digests identifying the source and its current files."""
    head = json.dumps([CACHE_VERSION, fmt, str(root), opts.resize, opts.skip_bad])
    source = hashlib.sha256(head.encode()).hexdigest()
    files = list_files(root, cache_dir)
    h = hashlib.sha256(head.encode())
    h.update("\n".join(f"{p}\0{s}\0{m}" for p, s, m in files).encode())
    return source, h.hexdigest()


def save_splits(path: Path, splits: Splits, skipped: int = 0) -> None:
    """Write ``splits`` to ``path`` atomically as an uncompressed npz."""
    arrays: dict[str, np.ndarray] = {
        "version": np.array(CACHE_VERSION),
        "classes": np.array(splits.train.classes, dtype=str),
        "meta": np.array([splits.name, splits.source, splits.fingerprint], dtype=str),
        "skipped": np.array(skipped, dtype=np.int64),
    }
    for name in _SPLITS:
        part: ImageData = getattr(splits, name)
        arrays[f"{name}_images"] = part.images.numpy()
        arrays[f"{name}_labels"] = part.labels.numpy()
        arrays[f"{name}_paths"] = np.array(part.paths if part.paths is not None else [], dtype=str)
    with atomic_writer(path) as f:
        np.savez(f, **arrays)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an uncompressed npz, each read with one ``readinto`` into its final buffer.

    ``np.load`` copies a zip member through 256 KB chunks (about 1 s for 180 MB on a busy CPU); an
    uncompressed member is a plain byte range of the file, so it can be read in one system call.
    Object arrays are refused (no pickle), as are compressed members and short reads.
    """
    fmt = np.lib.format
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
        for info in zf.infolist():
            if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                raise ValueError(f"unexpected member {info.filename!r}")
            f.seek(info.header_offset)
            local = f.read(30)
            if local[:4] != b"PK\x03\x04":
                raise ValueError(f"bad zip header of {info.filename!r}")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            f.seek(info.header_offset + 30 + name_len + extra_len)
            major, _ = fmt.read_magic(f)
            read_header = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            if dtype.hasobject:
                raise ValueError(f"object array {info.filename!r} refused")
            count = int(np.prod(shape, dtype=np.int64))
            buf = np.empty(count * dtype.itemsize, dtype=np.uint8)
            if f.readinto(memoryview(buf)) != buf.nbytes:
                raise ValueError(f"{info.filename!r} is truncated")
            arr = buf.view(dtype)
            arr = arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)
            out[info.filename[:-4]] = arr
    return out


def load_splits(path: Path) -> tuple[Splits, int]:
    """Read a cache file written by :func:`save_splits`; returns ``(splits, skipped count)``."""
    z = _read_npz(path)
    if int(z["version"]) != CACHE_VERSION:
        raise ValueError(f"cache version {int(z['version'])} != {CACHE_VERSION}")
    classes = tuple(z["classes"].tolist())
    name, source, fingerprint = z["meta"].tolist()
    parts = []
    for split in _SPLITS:
        images = torch.from_numpy(z[f"{split}_images"])
        paths = z[f"{split}_paths"].tolist()
        parts.append(ImageData(images, torch.from_numpy(z[f"{split}_labels"]), classes,
                               tuple(paths) if len(paths) == len(images) else None))
    return Splits(parts[0], parts[1], name=name, source=source, fingerprint=fingerprint), int(z["skipped"])


def cached(fmt: str, root: Path, opts: LoadOptions, build: Callable[[], tuple[Splits, int]]) -> Splits:
    """The splits of ``root`` from the cache, or ``build()`` (returning ``(splits, skipped)``) then cached."""
    cache_dir = Path(opts.cache_dir).expanduser() if opts.cache_dir is not None else default_cache_dir()
    source, key = cache_key(fmt, root, opts, cache_dir)
    path = cache_dir / f"{fmt}-{source[:12]}-{key[:20]}.npz"
    if path.exists():
        try:
            splits, skipped = load_splits(path)
        except Exception as e:  # noqa: BLE001 - any unreadable cache is rebuilt, never trusted
            log.warning("ignoring unreadable dataset cache %s (%s: %s); rebuilding", path, type(e).__name__, e)
        else:
            log.info("loaded %s from cache %s", root, path)
            if skipped:
                log.warning("%d bad file(s) or row(s) of %s were skipped when this cache was built", skipped, root)
            return splits
    splits, skipped = build()
    try:
        save_splits(path, splits, skipped)
        for old in cache_dir.glob(f"{fmt}-{source[:12]}-*.npz"):
            if old != path:
                old.unlink(missing_ok=True)
        log.info("cached %s as %s", root, path)
    except OSError as e:
        log.warning("could not write dataset cache %s: %s", path, e)
    return splits
