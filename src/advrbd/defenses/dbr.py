"""D-BR (Chen, Wu, Zhang, Wu and Wang, 2022, "Effective Backdoor Defense by Exploiting Sensitivity of
Poisoned Samples", NeurIPS): sample distinguishment (SD) + backdoor removal (BR).

SD. Train a warm-up model for a few epochs; for every training sample compute the
feature consistency towards transformations, FCT = mean_j (f(x)_j − f(τ(x))_j)², where f is the penultimate
feature and τ a random rotation (uniform in ±180°) followed by a random translation (up to 20% of the size),
the authors' ``--trans1 rotate --trans2 affine``. Poisoned samples are sensitive to the transformation (the
trigger moves or leaves the image), so the α_p share with the highest FCT is taken as poisoned and the α_c
share with the lowest FCT as clean.

BR. Starting from the backdoored model (standard training), repeat for ``rounds`` epochs: one epoch of
gradient ascent on the poisoned set (negative weights in ``fit``), then one epoch of ordinary training on
the clean set; constant learning rate.

Values: α_c = 0.20, α_p = 0.05, 2 warm-up epochs, 20 unlearn/relearn epochs at lr 1e-4 with batch 128 are
the authors' defaults (README and ``utils/args.py`` of SCLBD/Effective_backdoor_defense; BackdoorBench
``config/defense/d-br``: clean_ratio 0.2, poison_ratio 0.05, 2 epochs). The AdvrBD paper's values were lost.
Simplified: the SD step's extra 10-epoch fine-tuning with the intra-class loss L_intra is not done (FCT is
computed on the warm-up model directly), and the BR optimiser restarts each epoch (momentum is reset).
Deviation: the authors train the warm-up model without augmentation; without the L_intra step that model
memorises per-sample noise and every sample becomes transformation-sensitive (on our synthetic planted-trigger
set the top-5% FCT set held 13–53% poison without augmentation, 93–97% with the recipe's crop/flip), so the
warm-up uses the recipe's augmentation by default (``warmup_augment``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from ..seeding import generator
from ..train.infer import model_device
from ..train.loop import fit
from ..types import DefenseResult, ImageData
from ._common import check_range, clone_model, features, fraction_count, require_classifier, stage_checkpoint
from .base import DEFENSES, Defense, DefenseContext


def rotate_translate(x: torch.Tensor, g: torch.Generator, max_deg: float = 180.0,
                     max_shift: float = 0.2) -> torch.Tensor:
    """Random rotation in ±``max_deg`` then translation up to ``max_shift``·size per axis, zero fill (NCHW [0,1])."""
    n = x.shape[0]
    u = torch.rand(n, 3, generator=g, device=x.device) * 2 - 1
    ang = u[:, 0] * max_deg * math.pi / 180
    t = u[:, 1:] * max_shift * 2  # grid coordinates span [-1, 1] = 2 units
    cos, sin = torch.cos(ang), torch.sin(ang)
    theta = torch.stack([torch.stack([cos, -sin, t[:, 0]], 1), torch.stack([sin, cos, t[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def fct_scores(model: torch.nn.Module, data: ImageData, seed: int, batch_size: int = 512,
               precision: str = "auto") -> torch.Tensor:
    """FCT of every sample (float32 ``N``; higher = more sensitive = more suspicious)."""
    dev = model_device(model)
    g = generator(seed, "dbr-fct", device=dev)
    out = []
    for s in range(0, len(data), batch_size):
        x = data.images[s : s + batch_size].to(dev).permute(0, 3, 1, 2).float().div_(255)
        f0 = features(model, x, batch_size, precision)
        f1 = features(model, rotate_translate(x, g), batch_size, precision)
        out.append(((f0 - f1) ** 2).mean(1))
    return torch.cat(out)


@DEFENSES.register("dbr", "D-BR: FCT sample split, then unlearn suspected poison / relearn clean (Chen et al., 2022)")
@dataclass
class DBR(Defense):
    """Split samples by feature consistency towards transformations, then unlearn and relearn."""

    name = "dbr"
    flags_samples = True

    # Chen et al. (2022) defaults (--clean_ratio 0.20 --poison_ratio 0.05); fixed rates, not the attack's.
    clean_ratio: float = field(default=0.20, metadata={"doc": "α_c: share of lowest-FCT samples taken as clean"})
    poison_ratio: float = field(default=0.05, metadata={"doc": "α_p: share of highest-FCT samples taken as poisoned"})
    # Chen et al. (2022): the SD model is trained 2 epochs (train_attack_noTrans.py --epochs 2); backdoors are
    # learned in the first epochs whatever the length of the full schedule, so this is not scaled.
    warmup_epochs: int = field(default=2, metadata={"doc": "epochs of the warm-up model used for FCT"})
    warmup_augment: bool = field(default=True, metadata={
        "doc": "train the warm-up model with the recipe's augmentation (the authors' code: none; see above)"})
    # Chen et al. (2022) unlearn_relearn.py: --epochs 20, lr 1e-4 constant, batch 128. The number of
    # unlearning steps matters, not the length of the model's original training, so it is not scaled.
    rounds: int = field(default=20, metadata={"doc": "unlearn-then-relearn epochs of the BR module"})
    lr: float = field(default=1e-4, metadata={"doc": "constant SGD learning rate of unlearning and relearning"})
    batch_size: int = field(default=128, metadata={"doc": "images per BR step"})

    def __post_init__(self) -> None:
        check_range("clean_ratio", self.clean_ratio, 0, 1, lo_open=True)
        check_range("poison_ratio", self.poison_ratio, 0, 1, lo_open=True)
        if self.clean_ratio + self.poison_ratio > 1:
            raise ValueError(f"clean_ratio + poison_ratio must be <= 1; got {self.clean_ratio} + {self.poison_ratio}")
        check_range("warmup_epochs", self.warmup_epochs, 1, 10_000)
        check_range("rounds", self.rounds, 0, 10_000)
        check_range("lr", self.lr, 0, 10, lo_open=True)
        check_range("batch_size", self.batch_size, 1, 1 << 20)

    def distinguish(self, ctx: DefenseContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """SD module: ``(fct scores N, clean positions, poisoned positions)``."""
        warm = ctx.new_model()
        require_classifier(warm, "dbr")
        cfg = ctx.recipe_with(epochs=self.warmup_epochs)
        if not self.warmup_augment:
            cfg = replace(cfg, crop_padding=0, flip=False, physical=False)
        fit(warm, ctx.train, cfg, checkpoint=stage_checkpoint(ctx, self, "warmup"),
            progress="D-BR: warm-up" if ctx.progress else False)
        fct = fct_scores(warm, ctx.train, ctx.recipe.seed, precision=ctx.recipe.precision)
        order = fct.argsort()
        n = len(order)
        n_p = fraction_count(self.poison_ratio, n)
        n_c = min(fraction_count(self.clean_ratio, n), n - n_p)
        return fct, order[:n_c], order[n - n_p :]

    def run(self, ctx: DefenseContext) -> DefenseResult:
        t0 = time.perf_counter()
        fct, clean_pos, poison_pos = self.distinguish(ctx)
        t_sd = time.perf_counter() - t0
        model = clone_model(ctx.backdoored_model())
        cfg = ctx.recipe_with(epochs=1, lr=self.lr, batch_size=self.batch_size, schedule="constant", warmup=0.0)
        n = len(ctx.train)
        minus = -torch.ones(n)
        history = []
        for r in range(self.rounds):
            # a fresh seed per round so each epoch sees a new shuffle and augmentation
            round_cfg = replace(cfg, seed=cfg.seed + r)
            fit(model, ctx.train, round_cfg, indices=poison_pos, weights=minus)
            res = fit(model, ctx.train, round_cfg, indices=clean_pos)
            history.append({"round": r + 1, "relearn_loss": res.history[-1]["loss"] if res.history else None})
        suspected = torch.zeros(n, dtype=torch.bool)
        suspected[poison_pos] = True
        info = {"n_clean": len(clean_pos), "n_poison": len(poison_pos), "sd_seconds": t_sd,
                "br_seconds": time.perf_counter() - t0 - t_sd, "seconds": time.perf_counter() - t0}
        threshold = float(fct[poison_pos].min()) if len(poison_pos) else None
        return DefenseResult(model=model, scores=fct, suspected=suspected, threshold=threshold,
                             history=tuple(history), info=info)
