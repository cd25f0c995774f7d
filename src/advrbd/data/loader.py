"""Dataset spec strings and :func:`load_dataset`, the one entry point to every reader.

Spec strings (``--data``):

==============================  ===========================================================
``imagefolder:/path``           ``train/<class>/*`` and ``test/<class>/*`` images
``cifar10:/path``               CIFAR-10 python pickles (``--download`` fetches them)
``cifar100:/path``              CIFAR-100 python pickles, fine labels (``--download``)
``gtsrb:/path``                 GTSRB official layout, resized to 32×32 by default
``tinyimagenet:/path``          Tiny-ImageNet-200 (val = test)
``imagenette:/path``            Imagenette (``train``/``val``), resized to 64×64 by default
``synthetic[:n=..,test=..]``    generated, options n, test, size, classes, seed
``digits``                      scikit-learn's bundled handwritten digits, 32×32 RGB
``/path``                       ``train/`` + ``test/`` class folders -> imagefolder;
                                ``data_batch_1`` -> cifar10
==============================  ===========================================================
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import NamedTuple

from ..errors import BadInputError
from ..types import Splits
from .base import DATASETS, LoadOptions
from .imagefolder import looks_like_imagefolder

log = logging.getLogger(__name__)

_FORMAT = re.compile(r"[a-z][a-z0-9_]*")


class DatasetSpec(NamedTuple):
    """A parsed spec: the registered format name and its argument (a path or ``key=value`` options)."""

    format: str
    arg: str


def parse_spec(spec: str) -> DatasetSpec:
    """Split ``"format:arg"`` into a :class:`DatasetSpec`; a bare path gets its format guessed.

    A prefix counts as a format name when it is a lower-case identifier and the whole spec is not an
    existing path (so ``/data/a:b`` stays a path). Unknown format names are a :class:`BadInputError`
    listing the known ones.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise BadInputError(f"empty dataset spec; known formats: {', '.join(DATASETS.names())}")
    spec = spec.strip()
    head, sep, tail = spec.partition(":")
    if sep and _FORMAT.fullmatch(head) and not Path(spec).exists():
        DATASETS.get(head)  # raises for an unknown name, listing the known ones
        return DatasetSpec(head, tail.strip())
    if _FORMAT.fullmatch(spec) and spec in DATASETS and not Path(spec).exists():
        return DatasetSpec(spec, "")
    return DatasetSpec(_guess_format(spec), spec)


def spec_path(spec: str) -> Path | None:
    """The path a spec names (``cifar10:/data/x`` and ``/data/x`` give ``/data/x``); None when the spec has no
    argument (``digits``). A generated set's options (``synthetic:n=100``) name no existing path."""
    arg = parse_spec(spec).arg
    return Path(arg).expanduser() if arg else None


def _guess_format(spec: str) -> str:
    path = Path(spec).expanduser()
    if not path.exists():
        raise BadInputError(
            f"dataset {spec!r} is neither an existing path nor a known format ({', '.join(DATASETS.names())}); "
            f"write e.g. imagefolder:/data/x or cifar10:/data/cifar-10-batches-py"
        )
    if looks_like_imagefolder(path):
        return "imagefolder"
    if (path / "data_batch_1").is_file() or (path / "cifar-10-batches-py" / "data_batch_1").is_file():
        return "cifar10"
    raise BadInputError(
        f"cannot tell the format of {path}: it has neither train/ and test/ class folders nor data_batch_1; "
        f"prefix the format, e.g. gtsrb:{path} (known: {', '.join(DATASETS.names())})"
    )


def load_dataset(
    spec: str,
    *,
    resize: int | None = None,
    skip_bad: bool = False,
    download: bool = False,
    cache_dir: str | Path | None = None,
) -> Splits:
    """Load a dataset given by a spec string into train and test :class:`~advrbd.types.ImageData`.

    spec:      see the module docstring, e.g. ``"cifar10:/data/cifar-10-batches-py"`` or ``"digits"``.
    resize:    square side in pixels (bilinear); None keeps the stored size (GTSRB: 32, Imagenette: 64).
               Needed when a folder mixes image sizes.
    skip_bad:  skip corrupt images and unreadable label rows, logging a warning with their count,
               instead of raising :class:`BadInputError`.
    download:  fetch CIFAR-10/100 from the official site when the files are absent.
    cache_dir: where decoded arrays are cached (default ``$ADVRBD_CACHE`` or ``~/.cache/advrbd``).

    Returns :class:`Splits` with uint8 ``N×H×W×3`` images, int64 labels, class names, per-sample
    source paths, and a content fingerprint. Any problem with the input is a one-line
    :class:`BadInputError` naming the offending file.
    """
    fmt, arg = parse_spec(spec)
    opts = LoadOptions(resize=resize, skip_bad=skip_bad, download=download,
                       cache_dir=Path(cache_dir) if cache_dir is not None else None)
    splits = DATASETS.get(fmt)(arg, opts)
    log.info("dataset %s: %d train + %d test images %s, %d classes, fingerprint %s", fmt, len(splits.train),
             len(splits.test), "×".join(map(str, splits.train.images.shape[1:])), splits.train.num_classes,
             splits.fingerprint)
    return splits
