"""The one training loop. Every method in advrbd (standard training, AdvrBD warm-up / enhancement /
clean training / relearning, every baseline) is a call to :func:`fit` with its own indices, labels,
per-sample weights or loss.

Speed (2 CPU cores, measured): the training set lives on the device as one uint8 NHWC tensor, batches
are converted and augmented there; bf16 autocast + channels_last together make training 2–3.5× faster
than fp32 on a CPU with native bf16 kernels (either alone helps little), so both are on by default there;
without them bf16 is 2.5–16× slower, so "auto" precision runs fp32 there (``train.precision``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import dist
from ..io import atomic_write_bytes
from ..seeding import generator
from ..types import ImageData
from .augment import physical_variation, random_crop, random_flip
from .infer import autocast, resolve_device

log = logging.getLogger(__name__)

# loss(logits N×K float32, targets N int64, idx N positions in the full set) -> per-sample loss N
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# callback(epoch (1-based), model, logs) after each epoch
Callback = Callable[[int, torch.nn.Module, dict], None]
# mix(x N×C×H×W augmented float batch, targets N, generator) -> (mixed x, other targets N, lam scalar or N):
# input mixing (CutMix, MixUp); the per-sample loss becomes lam·loss(y) + (1 − lam)·loss(other).
Mix = Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


@dataclass
class TrainConfig:
    """Settings of one :func:`fit` call. Learning rate is the peak of the schedule."""

    epochs: int = field(default=10, metadata={"doc": "passes over the selected samples"})
    batch_size: int = field(default=512, metadata={"doc": "images per step"})
    lr: float = field(default=0.2, metadata={"doc": "peak learning rate (SGD)"})
    momentum: float = field(default=0.9, metadata={"doc": "SGD momentum"})
    nesterov: bool = field(default=True, metadata={"doc": "Nesterov momentum"})
    weight_decay: float = field(default=5e-4, metadata={"doc": "L2 weight decay"})
    schedule: Literal["onecycle", "cosine", "constant"] = field(
        default="onecycle", metadata={"doc": "onecycle: linear up then linear down to 0; cosine: warm-up then cosine"}
    )
    warmup: float = field(default=0.2, metadata={"doc": "fraction of steps spent warming up (onecycle/cosine)"})
    label_smoothing: float = field(default=0.0, metadata={"doc": "label smoothing of the default loss"})
    crop_padding: int = field(default=4, metadata={"doc": "random-crop padding in pixels (0 = no crop)"})
    flip: bool = field(default=True, metadata={"doc": "random horizontal flip"})
    physical: bool = field(default=False, metadata={"doc": "PhysicalBA training-time variation on every image"})
    precision: Literal["auto", "bf16", "fp32"] = field(default="auto", metadata={
        "doc": "auto = bf16 autocast where the device runs it fast (infer.bf16_is_fast), else fp32"})
    channels_last: bool = field(default=True, metadata={"doc": "channels_last memory format"})
    seed: int = field(default=0, metadata={"doc": "seed of shuffling and augmentation"})
    device: str = field(default="auto", metadata={"doc": "auto, cpu, cuda, cuda:N"})

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or self.lr < 0 or not 0 <= self.warmup <= 1:
            raise ValueError("epochs >= 0, batch_size >= 1, lr >= 0 and 0 <= warmup <= 1 are required")


@dataclass(frozen=True)
class FitResult:
    seconds: float
    images_per_second: float
    epochs: int
    history: tuple[dict, ...]
    resumed_from: int = 0


def stderr_is_terminal() -> bool:
    """Progress bars only on a terminal; elsewhere (a script, a scheduler, a log file) log lines instead."""
    import sys

    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def lr_factor(cfg: TrainConfig, step: int, total: int) -> float:
    """Multiplier of ``cfg.lr`` at optimiser step ``step`` of ``total``."""
    if cfg.schedule == "constant" or total <= 0:
        return 1.0
    t = step / total
    if cfg.warmup > 0 and t < cfg.warmup:
        return t / cfg.warmup
    rest = (t - cfg.warmup) / max(1e-12, 1 - cfg.warmup)
    if cfg.schedule == "onecycle":
        return max(0.0, 1.0 - rest)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, rest)))


def default_loss(cfg: TrainConfig) -> LossFn:
    def loss(logits: torch.Tensor, targets: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets, reduction="none", label_smoothing=cfg.label_smoothing)

    return loss


def _fingerprint(cfg: TrainConfig, positions: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None,
                 model: torch.nn.Module) -> str:
    """What a checkpoint must match to be resumed: the recipe, the samples, their labels and weights, and
    the model's starting weights (a run that starts from other weights must not resume another's)."""
    h = hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode())
    for t in (positions, labels, weights, *model.state_dict().values()):
        if t is not None:
            h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def fit(
    model: torch.nn.Module,
    data: ImageData,
    cfg: TrainConfig,
    *,
    indices: torch.Tensor | Sequence[int] | None = None,
    labels: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    loss: LossFn | None = None,
    mix: Mix | None = None,
    callbacks: Sequence[Callback] = (),
    checkpoint: str | Path | None = None,
    progress: bool | str = False,
) -> FitResult:
    """Train ``model`` in place on ``data`` with SGD.

    indices:    positions of ``data`` to train on (default all).
    labels:     int64 ``len(data)`` labels to train with instead of ``data.labels`` (e.g. relabels).
    weights:    float ``len(data)`` per-sample loss weights; negative = gradient ascent (unlearning).
                The batch loss is ``sum(w_i * loss_i) / batch_size``.
    loss:       per-sample loss ``loss(logits, targets, idx)``; default cross-entropy.
    mix:        optional input mixing after augmentation (e.g. CutMix): ``mix(x, y, g) -> (x, y_other, lam)``;
                the per-sample loss is then ``lam * loss(logits, y) + (1 - lam) * loss(logits, y_other)``.
    checkpoint: file for an end-of-epoch checkpoint; if it exists with the same recipe, samples, labels,
                weights and starting weights, the run resumes after its last finished epoch and ends with the
                same weights as an uninterrupted run (shuffling and augmentation derive from (seed, epoch)).
                A ``loss``/``mix`` hook is not fingerprinted: callers name the file after their settings.
    progress:   show a progress bar (a string is used as its title).

    Under ``torchrun`` every rank calls ``fit`` alike: each global batch (same order, same augmentation draws
    as one process) is split over the ranks, gradients are all-reduced (DistributedDataParallel) so the step
    equals one process's up to BatchNorm, which normalises each rank's slice with its own statistics (the
    running statistics are averaged over the ranks after each epoch).
    """
    dev = resolve_device(cfg.device)
    n_all = len(data)
    pos = torch.arange(n_all) if indices is None else torch.as_tensor(indices, dtype=torch.long).cpu()
    y_all = (data.labels if labels is None else torch.as_tensor(labels, dtype=torch.long)).cpu()
    w_all = None if weights is None else torch.as_tensor(weights, dtype=torch.float32).cpu()
    loss_fn = loss or default_loss(cfg)
    fp = _fingerprint(cfg, pos, y_all, w_all, model) if checkpoint else None  # before any step changes the weights
    model.to(dev)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    images = data.images.to(dev)
    y_dev = y_all.to(dev)
    w_dev = None if w_all is None else w_all.to(dev)
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
    )
    bs = min(cfg.batch_size, max(2, len(pos)))
    # A trailing batch under half a batch is left out of the epoch (its samples come back in the next
    # shuffled order). Measured: with it, a last batch of 2 images (8,194 = 16 × 512 + 2) taking a full
    # learning-rate step on BatchNorm statistics of 2 samples kept a CIFAR-10 quick run at chance for
    # every seed and learning rate tried.
    steps_per_epoch = len(pos) // bs + (1 if len(pos) % bs >= max(2, bs // 2) else 0)
    total = steps_per_epoch * cfg.epochs
    start_epoch, history = 0, []
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location=dev, weights_only=True)
        if state.get("fingerprint") == fp:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            start_epoch, history = int(state["epoch"]), list(json.loads(state["history"]))
            log.info("resuming %s after epoch %d", ckpt, start_epoch)
        else:
            log.warning("ignoring checkpoint %s: it belongs to other settings", ckpt)
    dist.same_on_all_ranks(start_epoch, f"the epoch {ckpt} resumes from")
    # a global batch too small to give every rank two samples runs in full on every rank instead
    sharded = dist.enabled() and bs >= 2 * dist.world_size() and any(p.requires_grad for p in model.parameters())
    net = dist.wrap(model) if sharded else model
    title = progress if isinstance(progress, str) else "train"
    terminal = stderr_is_terminal()
    bar = tqdm(total=total, initial=start_epoch * steps_per_epoch, desc=title, disable=not progress or not terminal,
               unit="step", leave=False, dynamic_ncols=True)
    every = max(1, math.ceil(cfg.epochs / 4))  # without a terminal: a log line every quarter of the run
    seen, t0 = 0, time.perf_counter()
    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        order = pos[torch.randperm(len(pos), generator=generator(cfg.seed, "fit-order", epoch))].to(dev)
        g = generator(cfg.seed, "fit-augment", epoch, device=dev)
        loss_sum = torch.zeros((), device=dev)
        te = time.perf_counter()
        for b in range(steps_per_epoch):
            idx = order[b * bs : (b + 1) * bs]
            step = epoch * steps_per_epoch + b
            for group in opt.param_groups:
                group["lr"] = cfg.lr * lr_factor(cfg, step, total)
            x = images[idx].permute(0, 3, 1, 2).float().div_(255)
            if cfg.physical:
                x = physical_variation(x, g)
            else:
                if cfg.crop_padding:
                    x = random_crop(x, cfg.crop_padding, g)
                if cfg.flip:
                    x = random_flip(x, g)
            y = y_dev[idx]
            if mix is not None:
                x, y_other, lam = mix(x, y, g)
            mine = idx
            if sharded:  # this rank's slice of the batch, augmented above like the whole batch
                part = dist.shard_slice(idx.numel())
                mine, x, y = idx[part], x[part], y[part]
                if mix is not None:
                    y_other = y_other[part]
                    lam = lam[part] if isinstance(lam, torch.Tensor) and lam.ndim else lam
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(dev, cfg.precision):
                logits = net(x)
            per = loss_fn(logits.float(), y, mine)
            if mix is not None:
                per = lam * per + (1 - lam) * loss_fn(logits.float(), y_other, mine)
            if w_dev is not None:
                per = per * w_dev[mine]
            batch_loss = per.sum() / idx.numel()
            opt.zero_grad(set_to_none=True)
            # DDP averages the ranks' gradients; the batch's gradient is their sum
            (batch_loss * dist.world_size() if sharded else batch_loss).backward()
            opt.step()
            loss_sum += batch_loss.detach()
            seen += idx.numel()
            bar.update(1)
        if sharded:
            loss_sum = dist.all_reduce_sum(loss_sum)
            dist.average_bn_stats(model)
        rec = {"epoch": epoch + 1, "loss": loss_sum.item() / max(1, steps_per_epoch),
               "seconds": time.perf_counter() - te}
        history.append(rec)
        bar.set_postfix(loss=f"{rec['loss']:.3f}")
        if progress and not terminal and ((epoch + 1) % every == 0 or epoch + 1 == cfg.epochs):
            log.info("%s: epoch %d/%d, loss %.3f, %.0f images/s", title, epoch + 1, cfg.epochs, rec["loss"],
                     seen / max(1e-9, time.perf_counter() - t0))
        for cb in callbacks:
            cb(epoch + 1, model, rec)
        if ckpt is not None:
            import io

            buf = io.BytesIO()
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch + 1,
                        "fingerprint": fp, "history": json.dumps(history)}, buf)
            atomic_write_bytes(ckpt, buf.getvalue())
    bar.close()
    model.eval()
    secs = time.perf_counter() - t0
    return FitResult(secs, seen / secs if secs > 0 else 0.0, cfg.epochs, tuple(history), start_epoch)

