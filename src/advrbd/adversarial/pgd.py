"""Patch-restricted PGD used by AdvrBD's perturbation-consistency score (paper Alg. 1, Eq. 3).

All functions are batched: one call handles a whole batch, with one random patch per sample.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def random_patch_masks(n: int, h: int, w: int, side: int, g: torch.Generator, device) -> torch.Tensor:
    """Float ``n×1×h×w`` masks, 1 inside one square of ``side`` pixels at a random position per sample."""
    side = max(1, min(side, h, w))
    y0 = torch.randint(0, h - side + 1, (n,), generator=g, device=device)
    x0 = torch.randint(0, w - side + 1, (n,), generator=g, device=device)
    rows = torch.arange(h, device=device)[None, :]
    cols = torch.arange(w, device=device)[None, :]
    in_r = (rows >= y0[:, None]) & (rows < (y0 + side)[:, None])  # n×h
    in_c = (cols >= x0[:, None]) & (cols < (x0 + side)[:, None])  # n×w
    return (in_r[:, :, None] & in_c[:, None, :]).unsqueeze(1).float()


def consistency_kl(
    model: torch.nn.Module,
    x: torch.Tensor,
    mask: torch.Tensor,
    eps: float,
    steps: int,
    g: torch.Generator,
    step_size: float | None = None,
    autocast_ctx=None,
) -> torch.Tensor:
    """``KL(p(x) ‖ p(x + m⊙δ))`` per sample after ``steps`` PGD steps that maximise it, ``‖δ‖∞ ≤ eps``.

    x: float [0,1] N×C×H×W; mask: N×1×H×W in {0,1}; eps in pixel units of [0,1].
    δ starts uniformly at random inside the ε-ball (the KL gradient is exactly zero at δ = 0).
    Returns float32 N (nats). The model must be in eval mode; its parameters get no gradient.
    """
    import contextlib

    ctx = autocast_ctx or contextlib.nullcontext
    alpha = step_size if step_size is not None else 2.5 * eps / max(1, steps)
    with torch.no_grad(), ctx():
        logp = F.log_softmax(model(x).float(), dim=1)
    p = logp.exp()
    cl = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    # keep δ in x's memory format: mixing NCHW and NHWC tensors falls off the fast bf16 conv path
    delta = ((torch.rand(x.shape, generator=g, device=x.device) * 2 - 1) * eps * mask).contiguous(memory_format=cl)

    def kl_of(d: torch.Tensor) -> torch.Tensor:
        with ctx():
            out = model((x + d).clamp(0, 1)).float()
        return (p * (logp - F.log_softmax(out, dim=1))).sum(1)

    for _ in range(steps):
        delta.requires_grad_(True)
        (grad,) = torch.autograd.grad(kl_of(delta).sum(), delta)
        with torch.no_grad():
            delta = ((delta + alpha * grad.sign()).clamp(-eps, eps) * mask).contiguous(memory_format=cl).detach()
    with torch.no_grad():
        return kl_of(delta).clamp_min(0)


def pgd_against_label(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int,
    g: torch.Generator,
    autocast_ctx=None,
) -> torch.Tensor:
    """Logits (float32 N×K) on ``x + δ`` after ``steps`` L∞ PGD steps that raise the cross-entropy of ``y``.

    x: float [0,1] N×C×H×W; y: int64 N; eps in [0,1] pixel units; δ over the whole image, random start,
    step 2.5·ε/steps. The model must be in eval mode; its parameters get no gradient.
    """
    import contextlib

    ctx = autocast_ctx or contextlib.nullcontext
    alpha = 2.5 * eps / max(1, steps)
    cl = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    delta = ((torch.rand(x.shape, generator=g, device=x.device) * 2 - 1) * eps).contiguous(memory_format=cl)
    for _ in range(steps):
        delta.requires_grad_(True)
        with ctx():
            loss = F.cross_entropy(model((x + delta).clamp(0, 1)).float(), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta = (delta + alpha * grad.sign()).clamp(-eps, eps).contiguous(memory_format=cl).detach()
    with torch.no_grad(), ctx():
        return model((x + delta).clamp(0, 1)).float()
