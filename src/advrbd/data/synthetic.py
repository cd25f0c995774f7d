"""Generated data sets that need no files: ``synthetic`` and scikit-learn's bundled ``digits``.

``synthetic``: each class has a smooth prototype (a distinct hue, an oriented stripe texture and a
low-frequency colour field); each sample is its class prototype shifted by up to ±3 pixels, scaled in
brightness by 0.85..1.15 and overlaid with Gaussian pixel noise (σ = 10/255). Classes are easy to
separate yet the images look like textured photos, so backdoor triggers behave as on real data.
Generation is vectorised in torch (~50,000 images of 32×32 per second on 2 cores).

``digits``: the 1,797 real 8×8 handwritten digits of ``sklearn.datasets.load_digits`` (UCI optical
recognition of handwritten digits), upscaled bilinearly to 32×32 RGB and split 75/25 per class with a
fixed seed. It ships with scikit-learn, so the demo needs no download.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import BadInputError
from ..seeding import generator
from ..types import ImageData, Splits
from .base import DATASETS, LoadOptions, make_splits
from .subset import stratified_split

_SHIFT = 3          # max shift in pixels: prototypes are drawn this much larger, then cropped
_NOISE = 10 / 255   # per-pixel Gaussian noise, std in [0,1] units
_CHUNK = 4096       # samples per vectorised chunk (bounds the float32 working set to ~50 MB at 32 px)


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``K×3`` RGB in [0,1] from hue, saturation and value (each ``K``, in [0,1])."""
    k = (torch.tensor([5.0, 3.0, 1.0]) + h[:, None] * 6) % 6
    return v[:, None] - v[:, None] * s[:, None] * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def _prototypes(num_classes: int, side: int, g: torch.Generator) -> torch.Tensor:
    """``K×side×side×3`` float class prototypes in [0,1]."""
    k = num_classes
    hue = (torch.randperm(k, generator=g).double() + 0.3 * torch.rand(k, generator=g, dtype=torch.float64)) / k
    sat = 0.45 + 0.45 * torch.rand(k, generator=g, dtype=torch.float64)
    val = 0.45 + 0.35 * torch.rand(k, generator=g, dtype=torch.float64)
    colour = _hsv_to_rgb(hue, sat, val).float()
    # stripes: angles in [0, pi/2] so a horizontal flip (angle -> pi - angle) never imitates another class
    angle = torch.rand(k, generator=g) * (math.pi / 2)
    period = 4.0 + 4.0 * torch.rand(k, generator=g)
    tint = torch.rand(k, 3, generator=g) * 0.5 + 0.5
    yy, xx = torch.meshgrid(torch.arange(side, dtype=torch.float32), torch.arange(side, dtype=torch.float32),
                            indexing="ij")
    phase = (xx[None] * torch.cos(angle)[:, None, None] + yy[None] * torch.sin(angle)[:, None, None])
    stripes = torch.sin(2 * math.pi * phase / period[:, None, None])  # K×side×side
    field = F.interpolate(torch.randn(k, 3, 4, 4, generator=g), size=(side, side), mode="bicubic",
                          align_corners=False).permute(0, 2, 3, 1)
    proto = colour[:, None, None, :] + 0.14 * stripes[..., None] * tint[:, None, None, :] + 0.07 * field
    return proto.clamp(0, 1)


def make_synthetic(n_train: int = 2000, n_test: int = 500, num_classes: int = 10, size: int = 32,
                   seed: int = 0, noise: float = _NOISE) -> Splits:
    """Separable synthetic images: uint8 ``N×size×size×3``, balanced classes ``class0..``.

    Deterministic given the arguments (draws from ``generator(seed, "synthetic")``). The tiny model
    reaches ≥ 95% test accuracy on the defaults within a few epochs. ``noise`` (std of the Gaussian
    pixel noise, [0,1] units) above ~0.3 makes classes overlap, so that clean samples sit near decision
    boundaries as on real data (used by the AdvrBD known-answer tests).
    """
    if min(n_train, n_test) < 1 or num_classes < 2 or size < 8:
        raise BadInputError(f"synthetic needs n_train, n_test >= 1, classes >= 2 and size >= 8; got "
                            f"{n_train}, {n_test}, {num_classes}, {size}")
    g = generator(seed, "synthetic")
    protos = _prototypes(num_classes, size + 2 * _SHIFT, g)
    n = n_train + n_test
    # balanced classes in each split (counts differ by at most one), in random order
    labels = torch.cat([(torch.arange(m) % num_classes)[torch.randperm(m, generator=g)] for m in (n_train, n_test)])
    images = torch.empty(n, size, size, 3, dtype=torch.uint8)
    grid = torch.arange(size)
    for lo in range(0, n, _CHUNK):
        y = labels[lo : lo + _CHUNK]
        m = len(y)
        dy, dx = (torch.randint(0, 2 * _SHIFT + 1, (2, m), generator=g))
        rows, cols = dy[:, None] + grid, dx[:, None] + grid                      # m×size each
        x = protos[y[:, None, None], rows[:, :, None], cols[:, None, :]]         # m×size×size×3
        x = x * (0.85 + 0.3 * torch.rand(m, 1, 1, 1, generator=g))
        x = x + noise * torch.randn(x.shape, generator=g)
        images[lo : lo + m] = (x.clamp_(0, 1) * 255).round_().to(torch.uint8)
    width = len(str(num_classes - 1))
    classes = [f"class{i:0{width}d}" for i in range(num_classes)]
    spec = f"synthetic:n={n_train},test={n_test},size={size},classes={num_classes},seed={seed}"
    imgs, labs = images.numpy(), labels.numpy()
    return make_splits("synthetic", spec, classes, (imgs[:n_train], labs[:n_train], None),
                       (imgs[n_train:], labs[n_train:], None))


_SYNTH_KEYS = {"n": "n_train", "test": "n_test", "size": "size", "classes": "num_classes", "seed": "seed"}


def parse_options(arg: str, keys: dict[str, str], what: str) -> dict[str, int]:
    """``"a=1,b=2"`` -> ``{keys[a]: 1, keys[b]: 2}``; unknown keys and non-integers are errors."""
    out: dict[str, int] = {}
    for item in filter(None, (s.strip() for s in arg.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key.strip() not in keys:
            raise BadInputError(f"bad {what} option {item!r}; known: {', '.join(f'{k}=N' for k in keys)}")
        try:
            out[keys[key.strip()]] = int(value)
        except ValueError:
            raise BadInputError(f"{what} option {key.strip()!r} must be an integer, got {value!r}") from None
    return out


@DATASETS.register("synthetic",
                   "generated separable images, no files (synthetic:n=2000,test=500,size=32,classes=10,seed=0)")
def read_synthetic(arg: str, opts: LoadOptions) -> Splits:
    """Generated class prototypes with noise, shifts and brightness changes."""
    kwargs = parse_options(arg, _SYNTH_KEYS, "synthetic")
    if opts.resize is not None:
        kwargs["size"] = opts.resize
    return make_synthetic(**kwargs)


@DATASETS.register("digits",
                   "scikit-learn's bundled 8×8 handwritten digits (1,797), upscaled to 32×32 RGB; no download")
def read_digits(arg: str, opts: LoadOptions) -> Splits:
    """Real handwritten digits, 10 classes, stratified 75/25 train/test split with a fixed seed."""
    if arg.strip():
        raise BadInputError(f"the digits dataset takes no options (got {arg!r}); use resize to change its size")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    size = opts.resize or 32
    x = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32) / 16.0)[:, None]   # N×1×8×8 in [0,1]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    u8 = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).expand(-1, -1, -1, 3).contiguous()
    paths = tuple(f"sklearn.datasets.load_digits#{i}" for i in range(len(u8)))
    full = ImageData(u8, torch.from_numpy(np.asarray(bunch.target, dtype=np.int64)),
                     tuple(str(c) for c in range(10)), paths)
    train, test = stratified_split(full, 0.25, seed=0, stage="digits-split")
    return make_splits("digits", "sklearn.datasets.load_digits", full.classes,
                       (train.images.numpy(), train.labels.numpy(), train.paths),
                       (test.images.numpy(), test.labels.numpy(), test.paths))
