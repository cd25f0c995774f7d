"""Tiny-ImageNet-200 reader (Le & Yang, 2015): 200 classes, 500 train + 50 val images each, 64×64.

Layout: ``train/<wnid>/images/*.JPEG`` and ``val/images/*.JPEG`` with ``val/val_annotations.txt``
(tab-separated: file name, wnid, then a bounding box that is ignored). The labelled ``val`` split is
the test split (the official ``test`` split has no labels). Classes are the train wnids sorted; they
are kept as wnids (``words.txt`` is not needed) so they stay valid, unique folder names.
"""
from __future__ import annotations

import logging
from pathlib import Path

from ..errors import BadInputError
from ..types import Splits
from .base import DATASETS, LoadOptions, existing_dir, image_files, label_rows, read_lines, subdirs
from .cache import cached
from .decode import decode_splits

log = logging.getLogger(__name__)

ANNOTATIONS = "val_annotations.txt"


def read_annotations(
    path: Path, images_dir: Path, index: dict[str, int], skip_bad: bool
) -> tuple[list[str], list[int], int]:
    """``(image paths, labels, skipped rows)`` from ``val_annotations.txt``.

    A row without two tab-separated fields, with an odd file name or with a wnid that is not a train
    class is a :class:`BadInputError` naming the file and line, or a skip with ``skip_bad``.
    """

    def parse(line: str) -> tuple[str, int]:
        cells = line.split("\t")
        if len(cells) < 2:
            raise ValueError("expected <file>\\t<wnid>\\t...")
        name, wnid = cells[0].strip(), cells[1].strip()
        if wnid not in index:
            raise ValueError(f"class {wnid!r} is not a train class")
        return name, index[wnid]

    return label_rows(path, read_lines(path), 1, images_dir, parse, skip_bad)


def _scan(root: Path, skip_bad: bool) -> tuple[list[str], tuple, tuple, int]:
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise BadInputError(f"{root} has no train/ folder (expected train/<wnid>/images/*.JPEG)")
    classes = subdirs(train_dir)
    if not classes:
        raise BadInputError(f"{train_dir} has no class folders")
    train_files: list[str] = []
    train_labels: list[int] = []
    for i, wnid in enumerate(classes):
        folder = train_dir / wnid / "images"
        names = image_files(folder) if folder.is_dir() else []
        if not names:
            raise BadInputError(f"empty class folder {folder}: no images")
        train_files += [str(folder / n) for n in names]
        train_labels += [i] * len(names)
    ann = root / "val" / ANNOTATIONS
    if not ann.is_file():
        raise BadInputError(f"missing test split: {ann} not found")
    index = {c: i for i, c in enumerate(classes)}
    test_files, test_labels, skipped = read_annotations(ann, root / "val" / "images", index, skip_bad)
    if not test_files:
        raise BadInputError(f"{ann} lists no images")
    return classes, (train_files, train_labels), (test_files, test_labels), skipped


@DATASETS.register("tinyimagenet", "Tiny-ImageNet-200: train/<wnid>/images, val/val_annotations.txt (val = test)")
def read_tinyimagenet(arg: str, opts: LoadOptions) -> Splits:
    """200 classes of 64×64 images; the labelled val split is the test split."""
    root = existing_dir(arg, "tinyimagenet")

    def build() -> tuple[Splits, int]:
        classes, train, test, bad_rows = _scan(root, opts.skip_bad)
        log.info("decoding %d + %d Tiny-ImageNet images of %s", len(train[0]), len(test[0]), root)
        splits, bad_images = decode_splits("tinyimagenet", root, classes, train, test, opts.resize, opts.skip_bad)
        return splits, bad_rows + bad_images

    return cached("tinyimagenet", root, opts, build)
