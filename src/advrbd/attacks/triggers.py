"""Trigger patterns and masks as pure functions (no state, no global randomness).

Conventions: a *pattern* is float32 ``C×H×W`` in ``[0,1]``; a *mask* is float32 ``1×H×W`` in ``[0,1]``
(1 = trigger pixel). Stamping follows SPEC §4: ``x' = (1 − α·m)⊙x + α·m⊙t``.

Positions in the attack papers are given for 32×32 images (e.g. BadNets' 3×3 square at rows/cols 29–31).
Every generator here takes positions on that 32-pixel reference grid and scales them to the requested
H×W, so one attack definition works at any image size. The procedural defaults are drawn by this code
(no third-party artwork); the toolkit images (Hello Kitty, Firefox) can be loaded with
:func:`load_trigger` instead.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import BadInputError

#: Side of the reference image that the papers' trigger positions refer to.
REF = 32
#: Fixed seed of the procedural blend pattern: the default trigger must not change between runs.
PATTERN_SEED = 20240611

# ITU-R BT.601 luma weights: the grey value a 3-channel trigger becomes on 1-channel images.
_LUMA = torch.tensor([0.299, 0.587, 0.114])


def stamp(x: torch.Tensor, pattern: torch.Tensor, mask: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
    """``(1 − α·m)⊙x + α·m⊙t`` for a float ``[0,1]`` NCHW batch; ``mask`` broadcasts (1×H×W or N×1×H×W)."""
    am = mask * alpha
    return ((1 - am) * x + am * pattern).clamp_(0, 1)


def to_channels(t: torch.Tensor, c: int) -> torch.Tensor:
    """Convert a ``C'×H×W`` pattern to ``c`` channels (RGB -> grey by luma; grey -> repeated)."""
    if t.shape[0] == c:
        return t
    grey = t if t.shape[0] == 1 else (t[:3] * _LUMA.to(t)[:, None, None]).sum(0, keepdim=True)
    return grey.expand(c, -1, -1).clone()


def scaled_box(h: int, w: int, rows: tuple[int, int], cols: tuple[int, int]) -> tuple[int, int, int, int]:
    """Half-open pixel box ``(r0, r1, c0, c1)`` at H×W of the inclusive 32×32 box ``rows``×``cols``.

    Edges scale exactly (row r maps to ``floor(r·H/32)``); the box keeps at least one pixel.
    """
    r0, r1 = rows[0] * h // REF, (rows[1] + 1) * h // REF
    c0, c1 = cols[0] * w // REF, (cols[1] + 1) * w // REF
    return min(r0, h - 1), max(r1, min(r0, h - 1) + 1), min(c0, w - 1), max(c1, min(c0, w - 1) + 1)


def box_mask(h: int, w: int, rows: tuple[int, int], cols: tuple[int, int]) -> torch.Tensor:
    """``1×H×W`` mask of the scaled 32×32-reference box (see :func:`scaled_box`)."""
    r0, r1, c0, c1 = scaled_box(h, w, rows, cols)
    m = torch.zeros(1, h, w)
    m[:, r0:r1, c0:c1] = 1.0
    return m


def _coords(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates in reference pixels (0..32), shape H×W each: drawing in these units
    makes a design look the same at every resolution."""
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) * REF / h
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) * REF / w
    return torch.meshgrid(ys, xs, indexing="ij")


def white_square(h: int, w: int, side: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """BadNets default: a ``side``×``side`` (at 32×32) white square in the bottom-right corner."""
    s = max(1, min(REF, side))
    return torch.ones(3, h, w), box_mask(h, w, (REF - s, REF - 1), (REF - s, REF - 1))


def smooth_pattern(h: int, w: int, seed: int = PATTERN_SEED) -> torch.Tensor:
    """Blend default: a seeded colour texture, ``3×H×W`` in ``[0,1]``.

    Four octaves of bicubically upsampled uniform noise on 2, 4, 8 and 16-cell grids (16 cells = 2 px
    per cell at 32×32): smooth blobs for a natural look plus mid-frequency detail, which a network picks
    up at α = 0.2 as readily as the Hello Kitty image it replaces. Each channel is stretched to [0,1].
    """
    g = torch.Generator().manual_seed(int(seed))
    acc = torch.zeros(1, 3, h, w)
    for cells, weight in ((2, 1.0), (4, 0.7), (8, 0.5), (16, 0.35)):
        coarse = torch.rand(1, 3, cells, cells, generator=g)
        acc += weight * F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    acc = acc[0]
    lo = acc.amin(dim=(1, 2), keepdim=True)
    hi = acc.amax(dim=(1, 2), keepdim=True)
    return ((acc - lo) / (hi - lo).clamp_min(1e-6)).clamp_(0, 1)


# The logo sits where the toolkits' firefox_corner_32.png does: a 13×13 disc at rows 1–13, cols 18–30.
_LOGO_CENTRE = (7.5, 24.5)
_LOGO_RADIUS = 6.5


def logo_patch(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Physical-attack default: a generated round logo (orange swirl ring around a blue globe with a
    white highlight) at the Firefox-corner position. Returns ``(3×H×W pattern, 1×H×W mask)``."""
    y, x = _coords(h, w)
    dy, dx = y - _LOGO_CENTRE[0], x - _LOGO_CENTRE[1]
    r = torch.sqrt(dy**2 + dx**2) / _LOGO_RADIUS
    ang = torch.atan2(dy, dx)
    # Ring colour swirls from deep orange to yellow with the angle (radius-dependent phase = a spiral).
    swirl = 0.5 + 0.5 * torch.sin(ang + 6.0 * r)
    ring = torch.stack([torch.ones_like(r), 0.35 + 0.5 * swirl, 0.05 + 0.15 * swirl])
    globe = torch.stack([0.10 + 0.1 * r, 0.30 + 0.2 * r, 0.95 - 0.3 * r])
    light = torch.exp(-((dy + 0.25 * _LOGO_RADIUS) ** 2 + (dx + 0.25 * _LOGO_RADIUS) ** 2) / (0.08 * _LOGO_RADIUS**2))
    globe = globe + light * (1 - globe)
    pattern = torch.where((r < 0.6)[None], globe, ring).clamp(0, 1)
    mask = (r <= 1.0).float()[None]
    return pattern, mask


def logo_pieces(h: int, w: int, k: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Adaptive-patch default: the generated logo cut into ``k`` angular sectors (k = 4 gives the four
    quarters, like the paper's Firefox×4). Returns ``(k×3×H×W patterns, k×1×H×W masks)``; the masks
    are disjoint and their union is the whole logo."""
    pattern, mask = logo_patch(h, w)
    y, x = _coords(h, w)
    ang = torch.atan2(y - _LOGO_CENTRE[0], x - _LOGO_CENTRE[1]) % (2 * math.pi)
    sector = (ang / (2 * math.pi) * k).long().clamp_(0, k - 1)
    masks = torch.stack([mask * (sector == i).float()[None] for i in range(k)])
    return pattern.expand(k, -1, -1, -1).clone(), masks


def square_pattern(h: int, w: int, rows: tuple[int, int] = (21, 28), cols: tuple[int, int] = (21, 28)) -> tuple[torch.Tensor, torch.Tensor]:
    """TaCT default: concentric one-pixel (at 32×32) square rings of saturated colours filling the box
    ``rows``×``cols`` (default the 8×8 box at rows/cols 21–28). Returns ``(3×H×W, 1×H×W)``."""
    y, x = _coords(h, w)
    cy, cx = (rows[0] + rows[1] + 1) / 2, (cols[0] + cols[1] + 1) / 2
    ring = torch.maximum((y - cy).abs(), (x - cx).abs()).floor().long()
    palette = torch.tensor([[1.0, 0.9, 0.0], [0.9, 0.0, 0.8], [0.0, 0.9, 0.9], [1.0, 1.0, 1.0]])
    pattern = palette[ring % len(palette)].permute(2, 0, 1).contiguous()
    return pattern, box_mask(h, w, rows, cols)


def sinusoid(h: int, w: int, delta: float, freq: float) -> torch.Tensor:
    """SIG signal ``v(j) = δ·sin(2π·j·f/W)`` over columns j (Barni et al., 2019), ``1×H×W``, additive."""
    j = torch.arange(w, dtype=torch.float32)
    return (delta * torch.sin(2 * math.pi * j * freq / w)).expand(1, h, w).clone()


def piece_ids(h: int, w: int, grid: int) -> torch.Tensor:
    """``H×W`` int64 map of the ``grid``×``grid`` pieces (row-major ids 0..grid²−1), edges scaled exactly."""
    rows = torch.arange(h) * grid // h
    cols = torch.arange(w) * grid // w
    return rows[:, None] * grid + cols[None, :]


# ---------------------------------------------------------------------------------------------- files


def _read_rgb(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 H×W×3 pixels and the alpha channel (if any) of an image file."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path).expanduser()
    if not p.is_file():
        raise BadInputError(f"trigger file not found: {p}")
    try:
        with Image.open(p) as im:
            im.load()
            alpha = np.asarray(im.getchannel("A")) if "A" in im.getbands() else None
            rgb = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise BadInputError(f"cannot read trigger image {p}: {e}") from None
    return rgb, alpha


def _fit(img: torch.Tensor, h: int, w: int, *, is_mask: bool) -> torch.Tensor:
    """Fit a ``C×h0×w0`` float image to H×W.

    Frame-sized files (both sides ≥ 32) are resized to H×W: nearest when enlarging (patches stay crisp
    and aligned with their masks), area-average when shrinking (no aliasing of e.g. a 224-px pattern).
    Smaller files are patches: scaled by H/32 and placed flush in the bottom-right corner, BadNets-style.
    """
    c, h0, w0 = img.shape
    if (h0, w0) == (h, w):
        return img
    if h0 >= REF and w0 >= REF:
        size = (h, w)
    else:
        size = (max(1, round(h0 * h / REF)), max(1, round(w0 * w / REF)))
        size = (min(size[0], h), min(size[1], w))
    shrink = size[0] < h0 or size[1] < w0
    out = F.interpolate(img[None], size=size, mode="area" if shrink else "nearest")[0]
    if is_mask:
        out = (out >= 0.5).float()
    if size == (h, w):
        return out
    full = torch.zeros(c, h, w)
    full[:, h - size[0]:, w - size[1]:] = out
    return full


def load_trigger(path: str | Path, size: tuple[int, int] | int, channels: int = 3) -> torch.Tensor:
    """Load any image file as a trigger pattern: float32 ``channels×H×W`` in ``[0,1]``.

    ``size`` is ``(H, W)`` or a side length. See :func:`_fit` for how the file is fitted to the size.
    """
    h, w = (size, size) if isinstance(size, int) else size
    rgb, _ = _read_rgb(path)
    t = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255.0
    return to_channels(_fit(t, h, w, is_mask=False), channels)


def load_mask(path: str | Path, size: tuple[int, int] | int) -> torch.Tensor:
    """Load a mask file: ``1×H×W`` float, 1 where any channel is non-black."""
    h, w = (size, size) if isinstance(size, int) else size
    rgb, _ = _read_rgb(path)
    m = torch.from_numpy((rgb.max(axis=2) > 0).astype(np.float32))[None]
    return _fit(m, h, w, is_mask=True)


def implied_mask(path: str | Path, size: tuple[int, int] | int) -> torch.Tensor:
    """The mask a trigger file implies without a mask file (the toolkits' convention): black pixels
    (and fully transparent ones, for images with alpha) are "no trigger". ``1×H×W`` float."""
    h, w = (size, size) if isinstance(size, int) else size
    rgb, alpha = _read_rgb(path)
    keep = rgb.max(axis=2) > 0
    if alpha is not None:
        keep &= alpha > 0
    return _fit(torch.from_numpy(keep.astype(np.float32))[None], h, w, is_mask=True)


def load_trigger_and_mask(
    path: str | Path, mask_path: str | Path | None, size: tuple[int, int] | int, channels: int = 3
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pattern and mask from a trigger file plus an optional mask file (see :func:`implied_mask`)."""
    pattern = load_trigger(path, size, channels)
    mask = load_mask(mask_path, size) if mask_path else implied_mask(path, size)
    if float(mask.sum()) == 0:
        raise BadInputError(f"trigger {path} has no trigger pixels (all black or masked out)")
    return pattern, mask


#: The trigger files of the paper's toolkits (SPEC §4, paper Table I; shipped for benchmarking in
#: ``../shared/data/triggers/``), by attack: Hello Kitty for the blends, a Firefox logo in the corner for
#: PhysicalBA and its four quarters for Adaptive-Patch. BadNets, SIG, WaNet and TaCT need no file.
PAPER_TRIGGER_FILES: dict[str, tuple[str, ...]] = {
    "blend": ("hellokitty_32.png",),
    "adaptive_blend": ("hellokitty_32.png",),
    "physical": ("firefox_corner_32.png",),
    "adaptive_patch": tuple(f"firefox_corner_split_{i}_32.png" for i in range(1, 5)),
}


def paper_trigger_settings(folder: str | Path) -> dict[str, dict[str, str]]:
    """``{attack: {"trigger": path[,path...]}}`` for the attacks of :data:`PAPER_TRIGGER_FILES`, with the
    files taken from ``folder``; every file is read once here so a missing or broken one fails now."""
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise BadInputError(f"trigger folder not found: {root}")
    out = {}
    for attack, names in PAPER_TRIGGER_FILES.items():
        for name in names:
            _read_rgb(root / name)
        out[attack] = {"trigger": ",".join(str(root / n) for n in names)}
    return out
