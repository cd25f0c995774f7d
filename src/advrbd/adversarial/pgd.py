"""Patch-restricted PGD used by AdvrBD's perturbation-consistency score (paper Alg. 1, Eq. 3).

All functions are batched: one call handles a whole batch, with one random patch per sample.
"""
from __future__ import annotations

import contextlib

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


def _linf_pgd(objective, x: torch.Tensor, eps: float, steps: int, alpha: float, g: torch.Generator,
              mask: torch.Tensor | None = None) -> torch.Tensor:
    """δ (detached, x's shape and memory format) after ``steps`` sign-gradient steps of size ``alpha`` that
    raise ``objective(δ).sum()`` (objective: δ -> float N), projected on ``‖δ‖∞ ≤ eps`` and on ``mask``
    (N×1×H×W in {0,1}; None = whole image). δ starts uniformly at random inside the ball."""
    cl = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format

    def project(d: torch.Tensor) -> torch.Tensor:
        # keep δ in x's memory format: mixing NCHW and NHWC tensors falls off the fast bf16 conv path
        return (d if mask is None else d * mask).contiguous(memory_format=cl)

    delta = project((torch.rand(x.shape, generator=g, device=x.device) * 2 - 1) * eps)  # skip_pgd_start mirrors it
    for _ in range(steps):
        delta.requires_grad_(True)
        (grad,) = torch.autograd.grad(objective(delta).sum(), delta)
        with torch.no_grad():
            delta = project((delta + alpha * grad.sign()).clamp(-eps, eps)).detach()
    return delta


def skip_pgd_start(g: torch.Generator, shape: tuple[int, ...], device) -> None:
    """Advance ``g`` past the random start that :func:`_linf_pgd` draws for a batch of ``shape``: a rank that
    leaves a batch to another rank still consumes its random numbers, so every batch gets the same ones as
    in a single process (``advrbd.dist.map_batches``)."""
    torch.rand(shape, generator=g, device=device)


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
    ctx = autocast_ctx or contextlib.nullcontext
    alpha = step_size if step_size is not None else 2.5 * eps / max(1, steps)
    with torch.no_grad(), ctx():
        logp = F.log_softmax(model(x).float(), dim=1)
    p = logp.exp()

    def kl_of(d: torch.Tensor) -> torch.Tensor:
        with ctx():
            out = model((x + d).clamp(0, 1)).float()
        return (p * (logp - F.log_softmax(out, dim=1))).sum(1)

    delta = _linf_pgd(kl_of, x, eps, steps, alpha, g, mask)
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
    ctx = autocast_ctx or contextlib.nullcontext

    def logits_at(d: torch.Tensor) -> torch.Tensor:
        with ctx():
            return model((x + d).clamp(0, 1)).float()

    delta = _linf_pgd(lambda d: F.cross_entropy(logits_at(d), y, reduction="none"), x, eps, steps,
                      2.5 * eps / max(1, steps), g)
    with torch.no_grad():
        return logits_at(delta)


@contextlib.contextmanager
def frozen_eval(model: torch.nn.Module):
    """Run the block with ``model`` in eval mode and no parameter gradients; restore both afterwards."""
    was_training = model.training
    model.eval()
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
        model.train(was_training)
