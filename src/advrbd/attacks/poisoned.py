"""Poisoned datasets on disk: an ImageFolder of lossless PNGs plus ``manifest.json`` with ground truth.

Layout written by :func:`write_poisoned` (what ``advrbd poison`` calls)::

    DIR/train/<class>/*.png   poisoned training set (given labels = folder)
    DIR/test/<class>/*.png    the clean test set
    DIR/manifest.json         attack name and settings, poison/cover indices, true labels, provenance
    DIR/gallery.png           clean vs triggered examples

Every index in the manifest (``poison_indices``, ``cover_indices``, and the per-sample lists
``original_index`` and ``true_labels``) refers to the order in which
``load_dataset("imagefolder:DIR").train`` reads the samples back; ``original_index[i]`` is the position
of read-back sample i in the source training set. :func:`load_poisoned` rebuilds the ground truth and
the Attack (so ``attack.make_asr_set(test)`` gives the triggered test set for evaluation).
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import torch

from ..errors import BadInputError
from ..io import atomic_write_bytes, read_json, write_json
from ..types import ImageData, PoisonedDataset, Splits
from .base import Attack, create_attack

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
GALLERY = "gallery.png"
FORMAT = "advrbd-poisoned/1"


def pixels_sha256(data: ImageData) -> str:
    """sha256 of the images as RGB uint8 (1-channel images count as grey RGB, as the readers load them)."""
    x = data.images
    if x.shape[3] == 1:
        x = x.expand(-1, -1, -1, 3)
    h = hashlib.sha256(repr(tuple(x.shape)).encode())
    h.update(x.contiguous().numpy().tobytes())
    return h.hexdigest()


def _train_permutation(result: Any, n: int) -> torch.Tensor:
    """The written-order -> original-index permutation of the training split from write_imagefolder's
    return value (a permutation, or a per-split mapping/pair of them)."""
    if isinstance(result, dict):
        result = result["train"]
    elif isinstance(result, (tuple, list)) and len(result) == 2 and not isinstance(result[0], int):
        result = result[0]
    perm = torch.as_tensor(result, dtype=torch.long).flatten()
    if perm.numel() != n or not torch.equal(perm.sort().values, torch.arange(n)):
        raise RuntimeError(f"write_imagefolder returned no permutation of the {n} training samples")
    return perm


def build_manifest(pd: PoisonedDataset, attack: Attack, perm: torch.Tensor, source: Splits, spec: str, n_test: int) -> dict[str, Any]:
    """Manifest of a poisoned set written in order ``perm`` (read-back position -> original index)."""
    from .. import __version__

    data_read = pd.data.subset(perm)
    poison_read = pd.poison_mask[perm].nonzero().flatten()
    cover_read = pd.cover_mask[perm].nonzero().flatten()
    true_read = pd.true_labels[perm]
    per_class = torch.bincount(true_read[poison_read], minlength=data_read.num_classes)
    return {
        "format": FORMAT,
        "advrbd_version": __version__,
        "attack": attack.name,
        "params": attack.params(),
        "seed": attack.seed,
        "target": attack.target,
        "train_overrides": dict(attack.train_overrides),
        "source": {"spec": spec, "name": source.name, "path": source.source, "fingerprint": source.fingerprint},
        "classes": list(data_read.classes),
        "counts": {
            "train": len(data_read),
            "test": n_test,
            "poison": int(len(poison_read)),
            "cover": int(len(cover_read)),
            "poison_by_true_class": per_class.tolist(),
        },
        "train_sha256": pixels_sha256(data_read),
        "poison_indices": poison_read.tolist(),
        "cover_indices": cover_read.tolist(),
        "original_index": perm.tolist(),
        "true_labels": true_read.tolist(),
    }


def write_poisoned(out_dir: str | Path, source: Splits, attack: Attack, *, spec: str = "", overwrite: bool = False,
                   gallery: bool = True) -> tuple[PoisonedDataset, dict[str, Any]]:
    """Poison ``source.train`` with ``attack`` and write DIR (see the module docstring).

    Returns the poisoned set (in the source order) and the manifest (in read-back order). The source is
    never modified; the folder's emptiness is the caller's check (``write_imagefolder`` enforces it too).
    """
    from ..data import write_imagefolder

    out = Path(out_dir)
    pd = attack.poison(source.train)
    poisoned = Splits(pd.data, source.test, name=f"{source.name}+{attack.name}" if source.name else attack.name,
                      source=str(out), fingerprint="")
    perm = _train_permutation(write_imagefolder(poisoned, out, overwrite=overwrite), len(pd.data))
    manifest = build_manifest(pd, attack, perm, source, spec, len(source.test))
    write_json(out / MANIFEST, manifest)
    if gallery:
        save_gallery(out / GALLERY, source.train, pd, attack)
    return pd, manifest


def load_poisoned(path: str | Path) -> tuple[PoisonedDataset, Splits, Attack]:
    """Read a folder written by ``advrbd poison``: ``(poisoned training set with ground truth, splits as
    read back (train poisoned, test clean), the Attack rebuilt from the manifest)``."""
    from ..data import load_dataset

    root = Path(path).expanduser()
    file = root / MANIFEST
    if not file.is_file():
        raise BadInputError(f"{root} is not a poisoned dataset: no {MANIFEST} (write one with `advrbd poison`)")
    try:
        m = read_json(file)
        attack = create_attack(m["attack"], **m["params"])
        poison_idx = torch.as_tensor(m["poison_indices"], dtype=torch.long)
        cover_idx = torch.as_tensor(m["cover_indices"], dtype=torch.long)
        true_labels = torch.as_tensor(m["true_labels"], dtype=torch.long)
    except (ValueError, KeyError, TypeError) as e:
        raise BadInputError(f"{file} is not a valid poison manifest: {e}") from None
    splits = load_dataset(f"imagefolder:{root}")
    n = len(splits.train)
    if len(true_labels) != n or (len(poison_idx) and int(poison_idx.max()) >= n) or (len(cover_idx) and int(cover_idx.max()) >= n):
        raise BadInputError(f"{file} describes {len(true_labels)} training samples but {root / 'train'} has {n}")
    if m.get("train_sha256") and m["train_sha256"] != pixels_sha256(splits.train):
        log.warning("%s: the training images differ from the ones the manifest was written for; "
                    "ground truth may be wrong", root)
    poison_mask = torch.zeros(n, dtype=torch.bool)
    poison_mask[poison_idx] = True
    cover_mask = torch.zeros(n, dtype=torch.bool)
    cover_mask[cover_idx] = True
    pd = PoisonedDataset(splits.train, true_labels, poison_mask, cover_mask, attack.name, attack.params())
    return pd, splits, attack


def load_data(spec: str, *, resize: int | None = None, skip_bad: bool = False,
              download: bool = False) -> tuple[PoisonedDataset | None, Splits, Attack | None]:
    """``(ground truth or None, splits, attack or None)`` of a dataset spec: a folder written by ``advrbd
    poison`` (it holds a manifest) comes back through :func:`load_poisoned`, anything else through
    :func:`advrbd.data.load_dataset` with no ground truth."""
    from ..data import load_dataset, spec_path

    root = spec_path(spec)
    if root is not None and (root / MANIFEST).is_file():
        return load_poisoned(root)
    return None, load_dataset(spec, resize=resize, skip_bad=skip_bad, download=download), None


def save_gallery(path: str | Path, clean: ImageData, pd: PoisonedDataset, attack: Attack, n_poison: int = 4, n_cover: int = 2) -> None:
    """PNG grid, one column per example (a few poison, then cover samples): row 1 the clean image,
    row 2 the training image as the victim gets it (with its label), row 3 the test-time trigger."""
    from io import BytesIO

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    picks = [("poison", int(i)) for i in pd.poison_indices[:n_poison]]
    picks += [("cover", int(i)) for i in pd.cover_indices[:n_cover]]
    if not picks:  # nothing poisoned: still show what the trigger looks like
        picks = [("clean", i) for i in range(min(n_poison, len(clean)))]
    idx = torch.tensor([i for _, i in picks], dtype=torch.long)
    rows = [
        ("clean", clean.images[idx]),
        ("training", pd.data.images[idx]),
        ("test trigger", attack.triggered(clean.images[idx], "test", torch.Generator().manual_seed(0))),
    ]
    grey = clean.images.shape[3] == 1
    fig = Figure(figsize=(1.7 * len(picks), 1.9 * len(rows) + 0.5))
    FigureCanvasAgg(fig)
    for r, (row_name, imgs) in enumerate(rows):
        for c, (kind, i) in enumerate(picks):
            ax = fig.add_subplot(len(rows), len(picks), r * len(picks) + c + 1)
            img = imgs[c].numpy()
            ax.imshow(img[..., 0] if grey else img, cmap="gray" if grey else None, vmin=0, vmax=255,
                      interpolation="nearest")
            ax.set_axis_off()
            if r == 0:
                title = f"{kind} #{i}\nclean, y={int(pd.true_labels[i])}"
            elif r == 1:
                title = f"training, y={int(pd.data.labels[i])}"
            else:
                title = "test trigger"
            ax.set_title(title, fontsize=7)
    fig.suptitle(f"{attack.name}: {int(pd.poison_mask.sum())} poison, {int(pd.cover_mask.sum())} cover of "
                 f"{len(clean)} (target {attack.target})", fontsize=9)
    fig.tight_layout()
    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(path, buf.getvalue())
