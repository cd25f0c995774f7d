"""Data parallelism under ``torchrun`` (SPEC §10): one process per device, every rank runs the same program.

Launched with ``torchrun --nproc_per_node N -m advrbd ...``, :func:`launched` joins the process group
(``nccl`` on CUDA, ``gloo`` on CPU). Then ``train.loop.fit`` splits every global batch over the ranks and
all-reduces gradients (DistributedDataParallel), and the per-sample passes (``infer.batched_apply``,
AdvrBD scoring) deal whole batches round-robin to the ranks through :func:`map_batches`, which hands every
rank the full result. Only rank 0 writes files (``io.atomic_write_bytes`` asks :func:`is_writer`).
Without ``torchrun`` (or with one process) nothing here changes what runs.
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import os
from typing import Callable, Iterator

import torch
import torch.distributed as tdist

log = logging.getLogger(__name__)
_local_depth = 0  # > 0 inside local(): per-sample passes run in full on this rank


def _initialised() -> bool:
    return tdist.is_available() and tdist.is_initialized()


def enabled() -> bool:
    """Whether work is sharded now: a process group of more than one rank, outside :func:`local`."""
    return _local_depth == 0 and _initialised() and tdist.get_world_size() > 1


def rank() -> int:
    return tdist.get_rank() if enabled() else 0


def world_size() -> int:
    return tdist.get_world_size() if enabled() else 1


def is_writer() -> bool:
    """Rank 0 (or no process group): the one process that writes outputs and checkpoints."""
    return not _initialised() or tdist.get_rank() == 0


@contextlib.contextmanager
def local() -> Iterator[None]:
    """Run the block unsharded on this rank alone (e.g. inference that only rank 0 performs): collective
    calls inside a rank-0-only block would wait forever for the other ranks."""
    global _local_depth
    _local_depth += 1
    try:
        yield
    finally:
        _local_depth -= 1


@contextlib.contextmanager
def launched(device: str = "auto") -> Iterator[bool]:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1) for the
    block, and leave it afterwards; yields whether it did. CUDA ranks use GPU ``LOCAL_RANK``."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or _initialised():
        yield False
        return
    cuda = not str(device).startswith("cpu") and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    # a rank that waits for a long CPU stage of another (the guard's EM runs on every rank) must not time out
    tdist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(hours=2))
    log.info("rank %d of %d (%s)", tdist.get_rank(), tdist.get_world_size(), tdist.get_backend())
    try:
        yield True
    finally:
        tdist.destroy_process_group()


def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if tdist.get_backend() == "nccl" else torch.device("cpu")


def same_on_all_ranks(value: object, what: str) -> None:
    """Raise unless every rank holds the same ``value`` (e.g. the epoch a checkpoint resumes from: a rank
    that cannot read the run directory would train while the others resume, and wait forever)."""
    if not enabled():
        return
    values: list = [None] * world_size()
    tdist.all_gather_object(values, value)
    if any(v != values[0] for v in values):
        raise RuntimeError(f"ranks disagree on {what}: {values}; the output directory must be on storage that "
                           f"every rank reads")


def wrap(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` in DistributedDataParallel (rank 0's weights are broadcast first). BatchNorm buffers are
    not broadcast at every step: :func:`average_bn_stats` averages them at the end of each epoch."""
    from torch.nn.parallel import DistributedDataParallel

    import inspect

    ids = [torch.cuda.current_device()] if model_device_type(model) == "cuda" else None
    # torch >= 2.13 renamed the switch (both still sync once at construction)
    new = "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    return DistributedDataParallel(model, device_ids=ids, **{"forward_sync_buffers" if new else "broadcast_buffers": False})


def model_device_type(model: torch.nn.Module) -> str:
    p = next(model.parameters(), None)
    return p.device.type if p is not None else "cpu"


@torch.no_grad()
def average_bn_stats(model: torch.nn.Module) -> None:
    """Mean of the BatchNorm running statistics over the ranks (each rank normalised its own slice of the
    batch, so each holds statistics of its slices only)."""
    if not enabled():
        return
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            for buf in (m.running_mean, m.running_var):
                t = buf.to(_comm_device())
                tdist.all_reduce(t)
                buf.copy_(t.div_(world_size()))


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over the ranks (``t`` itself without a process group)."""
    if not enabled():
        return t
    out = t.detach().to(_comm_device()).clone()
    tdist.all_reduce(out)
    return out.to(t.device)


def shard_slice(n: int) -> slice:
    """This rank's share of a global batch of ``n`` samples: every world_size-th from its rank
    (DistributedSampler's layout), disjoint over ranks and together the whole batch."""
    return slice(rank(), n, world_size())


def map_batches(n: int, batch_size: int, fn: Callable[[int, int], torch.Tensor],
                skip: Callable[[int, int], None] | None = None) -> list[torch.Tensor]:
    """``[fn(start, stop) for each batch of range(n)]`` in order (CPU tensors with rows = batch size).

    Sharded: batch b runs on rank ``b % world_size`` and every rank receives all outputs. Batches keep
    their boundaries, so each output equals the single-process one. ``skip(start, stop)`` runs for the
    batches of other ranks, to keep a random stream in step with a single process.
    """
    starts = range(0, n, batch_size)
    if not enabled():
        return [fn(s, min(n, s + batch_size)) for s in starts]
    r, w = rank(), world_size()
    mine = []
    for b, s in enumerate(starts):
        if b % w == r:
            mine.append(fn(s, min(n, s + batch_size)))
        elif skip is not None:
            skip(s, min(n, s + batch_size))
    return _gather_batches(mine, [min(n, s + batch_size) - s for s in starts])


def _gather_batches(mine: list[torch.Tensor], sizes: list[int]) -> list[torch.Tensor]:
    """All batches' outputs in order, from each rank's own (batch b lives on rank b % world)."""
    w = world_size()
    local = torch.cat(mine) if mine else None
    meta = None if local is None else (local.shape[0], tuple(local.shape[1:]), str(local.dtype))
    metas: list = [None] * w
    tdist.all_gather_object(metas, meta)
    known = [m for m in metas if m is not None]
    if not known:
        return []
    tail, dtype = known[0][1], getattr(torch, known[0][2].split(".")[-1])
    rows = [m[0] if m is not None else 0 for m in metas]
    dev = _comm_device()
    buf = torch.zeros((max(rows), *tail), dtype=dtype, device=dev)
    if local is not None:
        buf[: local.shape[0]] = local.to(dev)
    parts = [torch.empty_like(buf) for _ in range(w)]
    tdist.all_gather(parts, buf)
    out: list[torch.Tensor | None] = [None] * len(sizes)
    for q in range(w):
        own = list(range(q, len(sizes), w))
        if not own:
            continue
        chunks = parts[q][: rows[q]].cpu().split([sizes[b] for b in own])
        for b, c in zip(own, chunks):
            out[b] = c
    return out  # type: ignore[return-value]
