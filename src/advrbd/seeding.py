"""Reproducibility by construction: every random step draws from a generator derived from (seed, stage).

No global seeding inside library code.
"""
from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, *stage: object) -> int:
    """A 63-bit seed that depends on ``seed`` and the stage labels (stable across runs and platforms)."""
    h = hashlib.sha256(repr((int(seed),) + tuple(str(s) for s in stage)).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def generator(seed: int, *stage: object, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded from ``(seed, *stage)``."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(seed, *stage))
    return g
