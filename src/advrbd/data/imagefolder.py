"""ImageFolder and Imagenette readers.

Layout: ``ROOT/train/<class>/<image>`` and ``ROOT/test/<class>/<image>`` (Imagenette: ``val/`` instead
of ``test/``), images ``.png .jpg .jpeg .ppm .bmp .webp`` in any size and colour mode (converted to
RGB). Classes are the train sub-folders sorted by name, unless ``ROOT/classes.txt`` (one name per
line, written by :func:`advrbd.data.write_imagefolder` when the class order is not alphabetical)
gives their order. The test folder may lack classes but may not add any; a test class keeps the index
of the train class with the same name.

Sample order: class by class, and within a class by file name (plain string order), so a folder
written by ``write_imagefolder`` reads back in the order it was written.
"""
from __future__ import annotations

import logging
from pathlib import Path

from ..errors import BadInputError
from ..types import Splits
from .base import DATASETS, IMAGE_EXTS, LoadOptions, existing_dir, image_files, subdirs
from .cache import cached
from .decode import decode_splits

log = logging.getLogger(__name__)

#: Optional file in ROOT fixing the class order (one class folder name per line).
CLASSES_FILE = "classes.txt"
IMAGENETTE_SIZE = 64  # Imagenette images are ~320-500 px and vary in size; 64 px keeps CPU training practical


def _class_order(root: Path, train_classes: list[str]) -> list[str]:
    file = root / CLASSES_FILE
    if not file.is_file():
        return train_classes
    listed = [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if sorted(listed) != train_classes:
        extra = sorted(set(listed) ^ set(train_classes))
        raise BadInputError(
            f"{file} lists {len(listed)} classes that do not match the {len(train_classes)} class folders "
            f"of {root / 'train'} (differences: {', '.join(extra[:5]) or 'duplicates'})"
        )
    return listed


def _scan_split(folder: Path, class_index: dict[str, int]) -> tuple[list[str], list[int]]:
    files: list[str] = []
    labels: list[int] = []
    for name in sorted(subdirs(folder), key=lambda c: class_index.get(c, -1)):
        if name not in class_index:
            raise BadInputError(
                f"class folder {folder / name} has no counterpart in the train split; test classes must be "
                f"a subset of the train classes"
            )
        names = image_files(folder / name)
        if not names:
            raise BadInputError(
                f"empty class folder {folder / name}: no {'/'.join(e[1:] for e in IMAGE_EXTS)} images in it"
            )
        files.extend(str(folder / name / n) for n in names)
        labels.extend([class_index[name]] * len(names))
    loose = image_files(folder)
    if loose:
        log.warning("ignoring %d image(s) directly in %s (images belong in class sub-folders), e.g. %s",
                    len(loose), folder, loose[0])
    return files, labels


def scan_imagefolder(root: Path, test_split: str = "test") -> tuple[list[str], tuple, tuple]:
    """``(classes, (train files, labels), (test files, labels))`` of an ImageFolder tree, in sample order."""
    for split in ("train", test_split):
        if not (root / split).is_dir():
            raise BadInputError(
                f"{root} has no {split}/ folder: expected {root}/train/<class>/<image> and "
                f"{root}/{test_split}/<class>/<image>"
            )
    train_classes = subdirs(root / "train")
    if not train_classes:
        raise BadInputError(f"{root / 'train'} has no class sub-folders")
    classes = _class_order(root, train_classes)
    index = {c: i for i, c in enumerate(classes)}
    train = _scan_split(root / "train", index)
    test = _scan_split(root / test_split, index)
    if not test[0]:
        raise BadInputError(f"{root / test_split} has no class sub-folders with images")
    return classes, train, test


def read_folder_tree(fmt: str, arg: str, opts: LoadOptions, test_split: str, default_resize: int | None) -> Splits:
    root = existing_dir(arg, fmt)
    resize = opts.resize if opts.resize is not None else default_resize

    def build():
        classes, train, test = scan_imagefolder(root, test_split)
        log.info("decoding %d + %d images of %s", len(train[0]), len(test[0]), root)
        return decode_splits(fmt, root, classes, train, test, resize, opts.skip_bad)

    return cached(fmt, root, LoadOptions(resize, opts.skip_bad, opts.download, opts.cache_dir), build)


@DATASETS.register("imagefolder", "ROOT/train/<class>/*.png|jpg and ROOT/test/<class>/*; any size with --resize")
def read_imagefolder(arg: str, opts: LoadOptions) -> Splits:
    """Class sub-folders under ``train/`` and ``test/``; classes sorted by folder name."""
    return read_folder_tree("imagefolder", arg, opts, "test", None)


@DATASETS.register("imagenette",
                   "Imagenette (fast.ai): ROOT/train/<wnid>, ROOT/val/<wnid>; resized to 64 px by default")
def read_imagenette(arg: str, opts: LoadOptions) -> Splits:
    """ImageFolder layout with ``val/`` as the test split; default resize 64×64."""
    return read_folder_tree("imagenette", arg, opts, "val", IMAGENETTE_SIZE)


def looks_like_imagefolder(path: Path) -> bool:
    """True if ``path`` has ``train/`` and ``test/`` folders with at least one class sub-folder each."""
    try:
        return all((path / s).is_dir() and subdirs(path / s) for s in ("train", "test"))
    except OSError:
        return False

