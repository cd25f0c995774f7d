"""GTSRB reader for the official layout (Stallkamp et al., 2012, German Traffic Sign Recognition Benchmark).

Training: ``Final_Training/Images/000NN/*.ppm`` with ``GT-000NN.csv`` in each class folder.
Test:     ``Final_Test/Images/*.ppm`` with ``GT-final_test.csv`` (shipped separately as
          ``GTSRB_Final_Test_GT.zip``; looked for in ``Final_Test/Images``, ``Final_Test`` and ``ROOT``).
CSV files are ``;``-separated with the header ``Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId``;
the label is ``ClassId`` and the whole image is used (no ROI crop). ``ROOT`` may also be the parent of
a ``GTSRB`` folder. Classes are ``"00000"``..``"000KK"`` for the class folders found (43 in the full set).
Images range from 15×15 to 250×250 pixels, so they are resized to 32×32 unless ``resize`` says otherwise.
"""
from __future__ import annotations

import logging
from pathlib import Path

from ..errors import BadInputError
from ..types import Splits
from .base import DATASETS, LoadOptions, existing_dir, label_rows, read_lines, subdirs
from .cache import cached
from .decode import decode_splits

log = logging.getLogger(__name__)

GTSRB_SIZE = 32  # the size used by the backdoor literature for GTSRB
TEST_CSV = "GT-final_test.csv"


def _find_root(path: Path) -> Path:
    for cand in (path, path / "GTSRB"):
        if (cand / "Final_Training" / "Images").is_dir():
            return cand
    raise BadInputError(f"{path} has no Final_Training/Images folder (the official GTSRB layout)")


def read_csv(csv: Path, images_dir: Path, num_classes: int, skip_bad: bool) -> tuple[list[str], list[int], int]:
    """``(image paths, labels, skipped rows)`` of one GTSRB ground-truth CSV.

    A row that cannot be parsed, names a file outside ``images_dir`` or has a ``ClassId`` outside
    ``0..num_classes-1`` is a :class:`BadInputError` naming the CSV and line, or a skip with ``skip_bad``.
    """
    lines = read_lines(csv, "utf-8-sig")
    if not lines:
        raise BadInputError(f"{csv} is empty (expected the header Filename;...;ClassId)")
    header = [h.strip() for h in lines[0].split(";")]
    if "Filename" not in header or "ClassId" not in header:
        raise BadInputError(f"{csv}:1: header must name the Filename and ClassId columns, found {lines[0]!r}")
    col_file, col_class = header.index("Filename"), header.index("ClassId")

    def parse(line: str) -> tuple[str, int]:
        cells = [c.strip() for c in line.split(";")]
        if len(cells) != len(header):
            raise ValueError(f"{len(cells)} fields, expected {len(header)}")
        name, label = cells[col_file], int(cells[col_class])
        if not 0 <= label < num_classes:
            raise ValueError(f"ClassId {label} is outside 0..{num_classes - 1}")
        return name, label

    return label_rows(csv, lines[1:], 2, images_dir, parse, skip_bad)


def _scan(root: Path, skip_bad: bool) -> tuple[list[str], tuple, tuple, int]:
    images = root / "Final_Training" / "Images"
    folders = subdirs(images)
    if not folders:
        raise BadInputError(f"{images} has no class folders (00000, 00001, ...)")
    bad = [f for f in folders if not f.isdigit()]
    if bad:
        raise BadInputError(f"GTSRB class folder {images / bad[0]} is not a number like 00000")
    num_classes = max(int(f) for f in folders) + 1
    classes = [f"{i:05d}" for i in range(num_classes)]
    missing = sorted(set(classes) - set(folders))
    if missing:
        raise BadInputError(f"GTSRB class folder {images / missing[0]} is missing (empty class)")
    train_files: list[str] = []
    train_labels: list[int] = []
    skipped = 0
    for name in classes:
        csv = images / name / f"GT-{name}.csv"
        if not csv.is_file():
            raise BadInputError(f"missing label file {csv}")
        files, labels, n_bad = read_csv(csv, images / name, num_classes, skip_bad)
        if not files:
            raise BadInputError(f"empty class folder {images / name}: {csv} lists no images")
        train_files += files
        train_labels += labels
        skipped += n_bad
    test_images = root / "Final_Test" / "Images"
    if not test_images.is_dir():
        raise BadInputError(f"{root} has no Final_Test/Images folder (the GTSRB test split)")
    csv = next((d / TEST_CSV for d in (test_images, test_images.parent, root) if (d / TEST_CSV).is_file()), None)
    if csv is None:
        raise BadInputError(
            f"no {TEST_CSV} (test labels, from GTSRB_Final_Test_GT.zip) in {test_images}, "
            f"{test_images.parent} or {root}"
        )
    test_files, test_labels, n_bad = read_csv(csv, test_images, num_classes, skip_bad)
    if not test_files:
        raise BadInputError(f"{csv} lists no test images")
    return classes, (train_files, train_labels), (test_files, test_labels), skipped + n_bad


@DATASETS.register("gtsrb", "GTSRB official layout (Final_Training/Images/000NN + GT-*.csv, Final_Test); 32 px")
def read_gtsrb(arg: str, opts: LoadOptions) -> Splits:
    """German traffic signs, 43 classes; images resized to 32×32 unless ``resize`` is given."""
    root = _find_root(existing_dir(arg, "gtsrb"))
    resize = opts.resize if opts.resize is not None else GTSRB_SIZE

    def build() -> tuple[Splits, int]:
        classes, train, test, bad_rows = _scan(root, opts.skip_bad)
        log.info("decoding %d + %d GTSRB images of %s", len(train[0]), len(test[0]), root)
        splits, bad_images = decode_splits("gtsrb", root, classes, train, test, resize, opts.skip_bad)
        return splits, bad_rows + bad_images

    return cached("gtsrb", root, LoadOptions(resize, opts.skip_bad, opts.download, opts.cache_dir), build)
