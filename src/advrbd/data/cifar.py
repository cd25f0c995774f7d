"""CIFAR-10 / CIFAR-100 readers for the official python pickles (Krizhevsky, 2009).

CIFAR-10: ``data_batch_1..5``, ``test_batch``, ``batches.meta``; CIFAR-100: ``train``, ``test``,
``meta`` (the 100 fine labels are used). Each batch is a dict with ``data`` (uint8 N×3072, channel-
major 3×32×32 rows) and ``labels`` / ``fine_labels``. ``ROOT`` may be the folder holding these files
or its parent holding ``cifar-10-batches-py`` / ``cifar-100-python``.

A pickle can run arbitrary code when loaded, and a dataset path may come from anyone, so the files
are read with :class:`RestrictedUnpickler`, which resolves only the few numpy functions an array
needs and refuses every other global.
"""
from __future__ import annotations

import io
import logging
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadInputError
from ..types import Splits
from .base import DATASETS, LoadOptions, make_splits, resize_images
from .cache import cached
from .download import download_and_extract

log = logging.getLogger(__name__)

#: format -> (archive URL, published md5, folder the archive unpacks to, train files, test file, meta file)
CIFAR_SOURCES: dict[str, dict[str, Any]] = {
    "cifar10": dict(url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                    md5="c58f30108f718f92721af3b95e74349a", folder="cifar-10-batches-py",
                    train=[f"data_batch_{i}" for i in range(1, 6)], test="test_batch", meta="batches.meta",
                    labels="labels", names="label_names"),
    "cifar100": dict(url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                     md5="eb9058c3a382ffc7106e4002c42a8d85", folder="cifar-100-python",
                     train=["train"], test="test", meta="meta", labels="fine_labels", names="fine_label_names"),
}


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # protocol-2 pickles written by Python 3 store bytes as _codecs.encode(str, "latin1")
    if encoding.lower().replace("-", "") != "latin1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_arr = np.zeros(1, np.uint8)
_ALLOWED = {
    "_reconstruct": _arr.__reduce_ex__(2)[0],   # ndarray pickled with protocols 0-4
    "_frombuffer": _arr.__reduce_ex__(5)[0],    # ndarray pickled with protocol 5
    "scalar": np.float64(0).__reduce__()[0],    # numpy scalars
    "ndarray": np.ndarray,
    "dtype": np.dtype,
    "encode": _latin1_encode,
}
_MODULES = {"numpy", "numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric",
            "numpy._core.numeric", "_codecs"}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that can build dicts, lists, bytes and numpy arrays, and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if module in _MODULES and name in _ALLOWED:
            if (module == "_codecs") == (name == "encode"):
                return _ALLOWED[name]
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def load_pickle(path: Path) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler` (``encoding='bytes'``, as CIFAR needs)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BadInputError(f"cannot read {path}: {e}") from None
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as e:
        raise BadInputError(f"unsafe or corrupt pickle {path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - truncated/garbled pickles raise many types
        raise BadInputError(f"corrupt pickle {path}: {type(e).__name__}: {e}") from None


def _field(d: Any, key: str, path: Path) -> Any:
    if not isinstance(d, dict):
        raise BadInputError(f"{path} does not hold a CIFAR dict (found {type(d).__name__})")
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise BadInputError(f"{path} has no {key!r} entry; is it a CIFAR python batch?")


def _read_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    d = load_pickle(path)
    data, labels = _field(d, "data", path), np.asarray(_field(d, label_key, path))
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072):
        shape = getattr(data, "shape", None)
        raise BadInputError(f"{path}: 'data' must be a uint8 N×3072 array, found {type(data).__name__} {shape}")
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise BadInputError(f"{path}: {label_key!r} must hold {len(data)} integer labels, found shape {labels.shape}")
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise BadInputError(
            f"{path}: label {int(labels[bad[0]])} of sample {int(bad[0])} is outside 0..{num_classes - 1}"
        )
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int64)


def locate(fmt: str, arg: str, download: bool) -> Path:
    """The folder holding the CIFAR files: ``arg`` or ``arg/<archive folder>``; downloads if asked."""
    src = CIFAR_SOURCES[fmt]
    if not arg:
        raise BadInputError(f"dataset spec '{fmt}:' needs a path, e.g. '{fmt}:/data/{src['folder']}'")
    root = Path(arg).expanduser().absolute()
    needed = [*src["train"], src["test"], src["meta"]]
    for folder in (root, root / src["folder"]):
        if all((folder / f).is_file() for f in needed):
            return folder
    if download:
        download_and_extract(src["url"], root, src["md5"])
        if all((root / src["folder"] / f).is_file() for f in needed):
            return root / src["folder"]
        raise BadInputError(f"the archive {src['url']} did not contain the expected files {needed}")
    where = root if root.is_dir() else None
    missing = [f for f in needed if where is None or not (where / f).is_file()]
    raise BadInputError(
        f"{fmt} files not found in {root} (missing {', '.join(missing)}); pass download=True (--download) "
        f"to fetch {src['url']}, or extract it there by hand"
    )


def read_cifar(fmt: str, arg: str, opts: LoadOptions) -> Splits:
    src = CIFAR_SOURCES[fmt]
    folder = locate(fmt, arg, opts.download)

    def build() -> tuple[Splits, int]:
        names = _field(load_pickle(folder / src["meta"]), src["names"], folder / src["meta"])
        classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        parts = []
        for files in (src["train"], [src["test"]]):
            arrays = [_read_batch(folder / f, src["labels"], len(classes)) for f in files]
            images = np.concatenate([a[0] for a in arrays])
            if opts.resize is not None:
                images = resize_images(images, opts.resize)
            paths = [f"{folder / f}#{i}" for f, a in zip(files, arrays) for i in range(len(a[1]))]
            parts.append((images, np.concatenate([a[1] for a in arrays]), paths))
        return make_splits(fmt, str(folder), classes, parts[0], parts[1]), 0

    return cached(fmt, folder, opts, build)


@DATASETS.register("cifar10", "CIFAR-10 python pickles (data_batch_1..5, test_batch); --download fetches them")
def read_cifar10(arg: str, opts: LoadOptions) -> Splits:
    """CIFAR-10: 50,000 + 10,000 images, 32×32, 10 classes."""
    return read_cifar("cifar10", arg, opts)


@DATASETS.register("cifar100", "CIFAR-100 python pickles (train, test, meta; fine labels); --download fetches them")
def read_cifar100(arg: str, opts: LoadOptions) -> Splits:
    """CIFAR-100: 50,000 + 10,000 images, 32×32, 100 fine classes."""
    return read_cifar("cifar100", arg, opts)
