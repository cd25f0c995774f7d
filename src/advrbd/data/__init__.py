"""Datasets: one reader per format in the ``DATASETS`` registry, a decoded-array cache, generated sets,
stratified subsets and an ImageFolder writer.

Every reader returns :class:`~advrbd.types.Splits` holding uint8 ``N×H×W×3`` RGB images and int64
labels; ``load_dataset("cifar10:/data/cifar-10-batches-py")`` is the one call the rest of advrbd uses.
"""
# registration, in the order `advrbd list datasets` shows them
from . import imagefolder, cifar, gtsrb, tinyimagenet, synthetic  # noqa: F401, I001
from .base import DATASETS, IMAGE_EXTS, LoadOptions
from .cache import default_cache_dir
from .loader import DatasetSpec, load_dataset, parse_spec, spec_path
from .subset import stratified_split, stratified_subset
from .synthetic import make_synthetic
from .writer import write_imagefolder

__all__ = [
    "DATASETS",
    "IMAGE_EXTS",
    "DatasetSpec",
    "LoadOptions",
    "default_cache_dir",
    "load_dataset",
    "make_synthetic",
    "parse_spec",
    "spec_path",
    "stratified_split",
    "stratified_subset",
    "write_imagefolder",
]
