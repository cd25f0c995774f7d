"""Neural Cleanse (Wang, Yao, Shan, Li, Viswanath, Zheng and Zhao, 2019, "Neural Cleanse: Identifying and
Mitigating Backdoor Attacks in Neural Networks", IEEE S&P): a model-level detector.

For every class t, reverse-engineer the smallest trigger that sends images to t: a mask m ∈ [0,1]^{H×W}
(shared by the colour channels) and a pattern p ∈ [0,1]^{C×H×W}, x' = (1 − m)⊙x + m⊙p, minimising
CE(f(x'), t) + λ_t·‖m‖₁ with Adam; all classes are optimised together in one batch. λ_t follows the
paper's schedule: after ``patience`` checks with the attack success ≥ 99% it is multiplied by 1.5, after
``patience`` checks below, divided by 1.5^1.5; the smallest mask reaching 99% is kept. The L1 norms of
the masks are scored with the MAD anomaly index (consistency constant 1.4826); classes on the small side
with index > 2 are flagged. The backdoored model is returned unchanged (detection only).

Images: no clean data is assumed (SPEC §2), so the optimisation uses ``n_images`` images drawn at random
from the (untrusted) training set; at a few percent poison almost all of them are clean.
Values: Adam lr 0.1, β = (0.5, 0.9), λ₀ = 1e-3, success threshold 99%, patience 5, multipliers 1.5 / 1.5^1.5,
batch 32 and the anomaly threshold 2 are the paper's / authors' code defaults (BackdoorBench
``config/defense/nc``: mask_lr 0.1, init_cost 1e-3, patience 5); the step budget is ours, to bound the cost.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..seeding import generator
from ..train.infer import autocast, resolve_device
from ..types import DefenseResult
from ._common import check_range, clone_model
from .base import DEFENSES, Defense, DefenseContext


def anomaly_index(values: torch.Tensor) -> torch.Tensor:
    """MAD anomaly index |v − median| / (1.4826 · median |v − median|) of each entry (float ``K``)."""
    med = values.median()
    mad = (values - med).abs().median().clamp(min=1e-12)
    return (values - med).abs() / (1.4826 * mad)


@DEFENSES.register("neural_cleanse",
                   "model-level detector: reverse-engineered trigger norms, MAD outlier test (Wang et al., 2019)")
@dataclass
class NeuralCleanse(Defense):
    """Flag the class whose reverse-engineered trigger is anomalously small; the model is returned as is."""

    name = "neural_cleanse"

    # Our budget: total Adam steps for all classes at once (the authors run up to ~1000 epochs with early stop).
    steps: int = field(default=300, metadata={"doc": "optimisation steps (all classes together)"})
    # Authors' code: BATCH_SIZE 32.
    batch_size: int = field(default=32, metadata={"doc": "images per class per step"})
    n_images: int = field(default=1000, metadata={"doc": "training images sampled for the optimisation"})
    lr: float = field(default=0.1, metadata={"doc": "Adam learning rate of mask and pattern (paper: 0.1)"})
    init_cost: float = field(default=1e-3, metadata={"doc": "initial weight λ of the mask L1 norm (paper: 1e-3)"})
    success: float = field(default=0.99, metadata={"doc": "attack success that counts as a working trigger"})
    patience: int = field(default=5, metadata={"doc": "checks before λ is raised or lowered (paper: 5)"})
    check_every: int = field(default=10, metadata={"doc": "steps between two λ checks (one 'epoch' of the paper)"})
    # Wang et al. (2019): anomaly index > 2 (95% confidence under a normal distribution).
    threshold: float = field(default=2.0, metadata={"doc": "anomaly index above which a small-mask class is flagged"})

    def __post_init__(self) -> None:
        check_range("steps", self.steps, 1, 10_000_000)
        check_range("batch_size", self.batch_size, 1, 1 << 16)
        check_range("n_images", self.n_images, 1, 1 << 30)
        check_range("lr", self.lr, 0, 100, lo_open=True)
        check_range("init_cost", self.init_cost, 0, 1e6)
        check_range("success", self.success, 0, 1, lo_open=True)
        check_range("patience", self.patience, 1, 1_000_000)
        check_range("check_every", self.check_every, 1, 1_000_000)
        check_range("threshold", self.threshold, 0, 1e6, lo_open=True)

    def reverse_engineer(self, model: torch.nn.Module, x_pool: torch.Tensor, k: int, seed: int,
                         precision: str = "auto") -> torch.Tensor:
        """L1 norm of the smallest working mask per class (float ``K``; the final mask where none worked)."""
        dev = x_pool.device
        _, c, h, w = x_pool.shape
        g = generator(seed, "nc-init", device=dev)
        # authors' init: uniform random mask and pattern, optimised in tanh space
        mask_p = torch.atanh((torch.rand(k, 1, h, w, generator=g, device=dev) * 2 - 1) * 0.99).requires_grad_()
        pat_p = torch.atanh((torch.rand(k, c, h, w, generator=g, device=dev) * 2 - 1) * 0.99).requires_grad_()
        opt = torch.optim.Adam([mask_p, pat_p], lr=self.lr, betas=(0.5, 0.9))
        cost = torch.full((k,), self.init_cost, device=dev)
        best = torch.full((k,), float("inf"), device=dev)
        up = torch.zeros(k, dtype=torch.long, device=dev)
        down = torch.zeros(k, dtype=torch.long, device=dev)
        target = torch.arange(k, device=dev).repeat_interleave(self.batch_size)
        acc_sum = torch.zeros(k, device=dev)
        for step in range(self.steps):
            sel = torch.randint(0, x_pool.shape[0], (self.batch_size,), generator=g, device=dev)
            mask = torch.tanh(mask_p) / 2 + 0.5
            pattern = torch.tanh(pat_p) / 2 + 0.5
            xa = (1 - mask[:, None]) * x_pool[sel][None] + (mask * pattern)[:, None]  # K×B×C×H×W
            with autocast(dev, precision):
                logits = model(xa.reshape(-1, c, h, w).contiguous(memory_format=torch.channels_last)).float()
            ce = F.cross_entropy(logits, target, reduction="none").view(k, -1).mean(1)
            l1 = mask.flatten(1).sum(1)
            opt.zero_grad(set_to_none=True)
            (ce + cost * l1).sum().backward()
            opt.step()
            with torch.no_grad():
                acc = (logits.argmax(1) == target).float().view(k, -1).mean(1)
                acc_sum += acc
                better = (acc >= self.success) & (l1 < best)
                best = torch.where(better, l1.detach(), best)
                if (step + 1) % self.check_every == 0:
                    ok = acc_sum / self.check_every >= self.success
                    acc_sum.zero_()
                    up, down = torch.where(ok, up + 1, 0), torch.where(ok, 0, down + 1)
                    cost = torch.where(up >= self.patience, cost * 1.5, cost)
                    cost = torch.where(down >= self.patience, cost / 1.5**1.5, cost)
                    up, down = torch.where(up >= self.patience, 0, up), torch.where(down >= self.patience, 0, down)
        final = (torch.tanh(mask_p) / 2 + 0.5).detach().flatten(1).sum(1)
        return torch.where(torch.isfinite(best), best, final).cpu()

    def run(self, ctx: DefenseContext) -> DefenseResult:
        t0 = time.perf_counter()
        dev = resolve_device(ctx.recipe.device)
        model = clone_model(ctx.backdoored_model()).to(dev).eval()
        params = [p.requires_grad_(False) for p in model.parameters()]
        g = generator(ctx.recipe.seed, "nc-sample")
        pick = torch.randperm(len(ctx.train), generator=g)[: self.n_images]
        x_pool = ctx.train.float_nchw(pick, device=dev)
        norms = self.reverse_engineer(model, x_pool, ctx.num_classes, ctx.recipe.seed, ctx.recipe.precision)
        for p in params:
            p.requires_grad_(True)
        idx = anomaly_index(norms)
        small = norms < norms.median()
        flagged = ((idx > self.threshold) & small).nonzero().flatten()
        flagged = flagged[idx[flagged].argsort(descending=True)].tolist()
        min_cls = int(norms.argmin())
        info = {"anomaly_index": float(idx[min_cls]), "flagged_class": flagged[0] if flagged else None,
                "flagged_classes": flagged, "mask_norms": norms.tolist(), "anomaly_indices": idx.tolist(),
                "n_images": len(pick), "seconds": time.perf_counter() - t0}
        return DefenseResult(model=model, info=info)
