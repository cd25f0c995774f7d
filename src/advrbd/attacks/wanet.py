"""WaNet (Nguyen & Tran, 2021, "WaNet – Imperceptible Warping-based Backdoor Attack", ICLR).

Trigger: a fixed, smooth warping field. A ``k×k×2`` field of uniform noise in [−1, 1] is divided by its
mean absolute value, upsampled bicubically to H×W (``align_corners=True``), scaled by ``s/H`` (rows) or
``s/W`` (columns) and added to the identity sampling grid in ``grid_sample``'s normalised [−1, 1]
coordinates; the grid is multiplied by ``grid_rescale`` and clamped to [−1, 1]. Images are resampled
bilinearly with ``grid_sample(align_corners=True)``: every output pixel is an interpolation of its
neighbours in the original, never a permutation. Paper settings: k = 4, s = 0.5, grid_rescale = 1.

Size of the warp: with ``align_corners=True`` one normalised unit is ``(H−1)/2`` pixels, so the pixel
displacement is ``s·n·(H−1)/(2H) < s·|n|/2`` where n is the upsampled noise; bicubic interpolation
overshoots its k×k samples by at most a factor 1.25 (sum of |weights| of the a = −0.75 cubic kernel),
so ``|displacement| ≤ 0.625·s·max|coarse|`` pixels — about half a pixel at s = 0.5, the reason the
trigger is invisible.

Cover ("noise") samples (cover rate 0.05) get the warp plus independent per-pixel grid noise uniform
in ``[−1/H, 1/H]`` and keep their labels, which stops the model from learning "any warp = target".
The field is drawn from ``seed`` so the same attack settings always give the same trigger.
Dirty label + cover, pixels in [0,1], any H×W and channel count.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..seeding import generator as make_generator
from .base import Attack, Mode, register


@register("wanet")
@dataclass
class WaNet(Attack):
    """WaNet: smooth image warping, dirty label + noise covers (Nguyen & Tran, 2021)."""

    cover_rate: float = field(default=0.05, metadata={"doc": "cover (noise) count as a fraction of the whole set"})
    k: int = field(default=4, metadata={"doc": "side of the coarse control grid of the warp"})
    s: float = field(default=0.5, metadata={"doc": "warp strength"})
    grid_rescale: float = field(default=1.0, metadata={"doc": "multiplier of the warped grid"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k < 2 or self.s < 0 or self.grid_rescale <= 0:
            raise ConfigError(f"wanet: need k >= 2, s >= 0, grid_rescale > 0; got k={self.k}, s={self.s}")

    def coarse_field(self) -> torch.Tensor:
        """``1×2×k×k`` control values in units of their mean absolute value (channel 0 = x, 1 = y)."""
        ins = torch.rand(1, 2, self.k, self.k, generator=make_generator(self.seed, self.name, "field")) * 2 - 1
        return ins / ins.abs().mean()

    def noise_field(self, h: int, w: int) -> torch.Tensor:
        """``1×H×W×2`` bicubic upsampling of :meth:`coarse_field` (x, y order as ``grid_sample`` wants)."""
        up = F.interpolate(self.coarse_field(), size=(h, w), mode="bicubic", align_corners=True)
        return up.permute(0, 2, 3, 1)

    def warp_grid(self, h: int, w: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """``1×H×W×2`` sampling grid of the test/poison trigger (normalised coordinates, clamped)."""
        memo = self._cache(("grid", h, w, str(device)))
        if not memo:
            ys = torch.linspace(-1, 1, h)
            xs = torch.linspace(-1, 1, w)
            gy, gx = torch.meshgrid(ys, xs, indexing="ij")
            identity = torch.stack((gx, gy), dim=2)[None]
            scale = torch.tensor([self.s / w, self.s / h])  # displacement ∝ 1/size: same look at any size
            grid = (identity + self.noise_field(h, w) * scale) * self.grid_rescale
            memo["v"] = grid.clamp(-1, 1).to(device)
        return memo["v"]

    def apply_trigger(self, images: torch.Tensor, mode: Mode = "test", *, generator: torch.Generator | None = None) -> torch.Tensor:
        self._check_mode(mode)
        n, _, h, w = images.shape
        grid = self.warp_grid(h, w, images.device).expand(n, -1, -1, -1)
        if mode == "cover":
            g = generator if generator is not None else make_generator(self.seed, self.name, "cover")
            noise = torch.rand(n, h, w, 2, generator=g) * 2 - 1
            noise = (noise * torch.tensor([1.0 / w, 1.0 / h])).to(images.device)
            grid = (grid + noise).clamp(-1, 1)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True).clamp_(0, 1)
