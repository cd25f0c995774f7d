"""``advrbd bench --jobs K``: K grid units at once, each in its own process, on the same device.

A CIFAR-10 ResNet-18 cell keeps only a small part of an H100/H200 busy, so several cells share one GPU
(on a CPU, the K processes split its threads). A unit is one attack of one seed: its defenses share one
standard training, so they stay in one process. Workers write their cells to ``out/jobs/s<seed>-<attack>.json``
and never ``results.json``; the parent alone merges them into it as units finish, then runs one ordinary
:func:`advrbd.bench.run_grid` pass that finds every cell done and adds the clean-model ASR floors. An
interrupted grid resumes like a sequential one (unit files left behind are merged first).
"""
from __future__ import annotations

import logging
import multiprocessing as mp
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .io import read_json, write_json
from .profiles import Profile

log = logging.getLogger(__name__)


def unit_file(seed: int, attack: str) -> str:
    """A file name for one unit; an attack variant's settings (``blend[trigger=a/b.png]``) become a hash."""
    import hashlib
    import re

    safe = re.sub(r"[^\w.-]", "_", attack)[:40]
    return f"jobs/s{seed}-{safe}-{hashlib.sha256(attack.encode()).hexdigest()[:8]}.json"


def merge_units(out: Path, files: Sequence[Path]) -> list[dict]:
    """Move the cells of finished units' ``files`` into ``out/results.json``; returns the cells added."""
    from .bench import KEY

    path = out / "results.json"
    cells: list[dict] = read_json(path) if path.is_file() else []
    done = {tuple(c.get(k) for k in KEY) for c in cells}
    added = []
    for f in files:
        if not f.is_file():
            continue
        for c in read_json(f):
            if tuple(c.get(k) for k in KEY) not in done:
                done.add(tuple(c.get(k) for k in KEY))
                added.append(c)
    if added:
        write_json(path, cells + added)
    for f in files:  # only after results.json holds their cells
        f.unlink(missing_ok=True)
    return added


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def _run_unit(job: tuple) -> tuple[int, str]:
    from .bench import run_grid

    profile, data, attack, defenses, out, seed, kw = job
    run_grid(profile, data, [attack], defenses, out, seeds=[seed], results_file=unit_file(seed, attack), **kw)
    return seed, attack


def run_grid_jobs(profile: Profile, data: str | None, attacks: Sequence[str], defenses: Sequence[str], out: Path,
                  *, jobs: int, seeds: Sequence[int] = (0,), on_cell: Callable[[dict], None] | None = None,
                  **kw: Any) -> list[dict[str, Any]]:
    """:func:`advrbd.bench.run_grid` with ``jobs`` units running at once (``kw``: its other settings except
    ``progress``, ``on_cell`` and ``results_file``). Returns all cells."""
    from . import dist
    from .bench import run_grid
    from .errors import ConfigError

    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1; got {jobs}")
    if dist.enabled():
        raise ConfigError("--jobs runs processes of its own; under torchrun use --jobs 1")
    out.mkdir(parents=True, exist_ok=True)
    merge_units(out, sorted((out / "jobs").glob("*.json")))  # units an interrupted run finished
    units = [(profile, data, a, list(defenses), out, s, kw) for s in seeds for a in attacks]
    if jobs > 1 and len(units) > 1:
        threads = max(1, torch.get_num_threads() // jobs)
        # spawn, not fork: a forked CUDA context (or OpenMP pool) does not survive in the child
        with mp.get_context("spawn").Pool(min(jobs, len(units)), _init_worker, (threads,)) as pool:
            for seed, attack in pool.imap_unordered(_run_unit, units):
                for c in merge_units(out, [out / unit_file(seed, attack)]):
                    if on_cell:
                        on_cell(c)
    # floors (and, with --jobs 1, every cell) in one ordinary pass
    return run_grid(profile, data, attacks, defenses, out, seeds=seeds, on_cell=on_cell, **kw)
