"""What users have, as ``ImageData``: numpy arrays, torch tensors, a ``(images, labels)`` pair or a
``torch.utils.data.Dataset`` yielding ``(image, label)``.

Images: uint8 ``N×H×W×C`` (0..255) or float ``N×C×H×W`` in [0,1] (numpy or torch; C = 1 or 3; a uint8
``N×C×H×W`` or float ``N×H×W×C`` array is recognised by where the channel axis is). Labels: any integer
array; values that are not exactly ``0..K-1`` are mapped to ``0..K-1`` in sorted order and kept as
``label_values`` so that results can be reported in the user's own labels.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..errors import BadInputError
from ..types import ImageData


def _tensor(x: Any, what: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    if hasattr(x, "__array__") or isinstance(x, (list, tuple)):  # PIL images, lists of numbers
        return torch.from_numpy(np.ascontiguousarray(np.asarray(x)))
    raise BadInputError(f"{what}: expected a numpy array or torch tensor, got {type(x).__name__}")


def images_uint8_nhwc(x: Any) -> torch.Tensor:
    """uint8 ``N×H×W×C`` from uint8 NHWC/NCHW or float [0,1] NCHW/NHWC (numpy or torch)."""
    t = _tensor(x, "images")
    if t.ndim == 3:  # N×H×W grey images
        t = t[..., None] if t.dtype == torch.uint8 else t[:, None]
    if t.ndim != 4:
        raise BadInputError(f"images must be 4-D (N×H×W×C uint8 or N×C×H×W float), got shape {tuple(t.shape)}")
    channels_first = t.shape[1] in (1, 3) and t.shape[3] not in (1, 3)
    channels_last = t.shape[3] in (1, 3) and not channels_first
    if not (channels_first or channels_last):
        raise BadInputError(f"images must have 1 or 3 channels (N×H×W×C or N×C×H×W), got shape {tuple(t.shape)}")
    if t.dtype == torch.uint8:
        return (t.permute(0, 2, 3, 1) if channels_first else t).contiguous()
    if t.is_floating_point():
        if t.numel() and (float(t.min()) < 0 or float(t.max()) > 1):
            raise BadInputError(f"float images must be in [0,1] (normalization belongs inside the model); "
                                f"got values in [{float(t.min()):.3g}, {float(t.max()):.3g}]")
        u8 = (t.float() * 255.0).round().to(torch.uint8)
        return (u8 if channels_last and not channels_first else u8.permute(0, 2, 3, 1)).contiguous()
    raise BadInputError(f"images must be uint8 (0..255) or float in [0,1], got {t.dtype}")


def encode_labels(labels: Any, classes: Sequence[str] | None = None) -> tuple[torch.Tensor, tuple[str, ...], list]:
    """(int64 labels in 0..K-1, class names, the user's label value of each class)."""
    y = _tensor(labels, "labels").flatten()
    if y.is_floating_point():
        if not bool((y == y.round()).all()):
            raise BadInputError("labels must be integers")
        y = y.long()
    if y.dtype == torch.bool or not (y.dtype.is_signed or y.dtype == torch.uint8):
        raise BadInputError(f"labels must be integers, got {y.dtype}")
    y = y.long()
    if classes is not None:
        return y, tuple(str(c) for c in classes), list(range(len(classes)))
    values = torch.unique(y).tolist()
    if values == list(range(len(values))):
        return y, tuple(str(v) for v in values), values
    lookup = {v: i for i, v in enumerate(values)}
    return torch.tensor([lookup[v] for v in y.tolist()], dtype=torch.long), tuple(str(v) for v in values), values


def _from_dataset(ds: Any) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for i in range(len(ds)):
        item = ds[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise BadInputError(f"dataset item {i} is a {type(item).__name__}, expected (image, label)")
        img = _tensor(item[0], f"dataset item {i} image")
        if img.ndim == 2:
            img = img[None] if img.is_floating_point() else img[..., None]
        images.append(img)
        labels.append(int(item[1]))
    if not images:
        raise BadInputError("the dataset is empty")
    if len({tuple(t.shape) for t in images}) > 1:
        raise BadInputError("dataset images differ in shape; resize them to one size first")
    return images_uint8_nhwc(torch.stack(images)), torch.tensor(labels)


def as_image_data(data: Any, labels: Any = None, classes: Sequence[str] | None = None) -> tuple[ImageData, list]:
    """(``ImageData``, label value per class). ``data``: ImageData, a ``(images, labels)`` pair, an image
    array/tensor with ``labels``, or a ``torch.utils.data.Dataset`` of ``(image, label)``."""
    if isinstance(data, ImageData):
        return data, list(range(data.num_classes))
    if isinstance(data, (tuple, list)) and len(data) == 2 and labels is None:
        data, labels = data
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(data, torch.Tensor):
        if labels is not None:
            raise BadInputError("a Dataset yields its own labels; do not pass labels as well")
        images, labels = _from_dataset(data)
    else:
        if labels is None:
            raise BadInputError("labels are required with an image array (pass (images, labels) or labels=...)")
        images = images_uint8_nhwc(data)
    y, names, values = encode_labels(labels, classes)
    if y.shape[0] != images.shape[0]:
        raise BadInputError(f"{images.shape[0]} images but {y.shape[0]} labels")
    return ImageData(images, y, names), values
