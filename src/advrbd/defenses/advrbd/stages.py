"""Persistence of finished stages so an interrupted defense resumes at the last finished one.

Each stage's key is the hash of its own settings chained to the previous stage's key: changing a late setting
reuses every earlier stage, and no hand-kept list says which setting touches which stage.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Any

import torch

from ...io import atomic_write_bytes

log = logging.getLogger(__name__)


def chain_key(previous: str, stage: str, settings: Any) -> str:
    blob = json.dumps([previous, stage, settings], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class StageStore:
    """Saves ``{name: dict of tensors / state_dicts / plain values}`` as ``<dir>/<prefix>-<name>.pt``.

    Loaded with ``weights_only=True``. Without a directory it stores nothing (no resume). A stage saved under
    another key is not loaded; the mid-stage ``fit`` checkpoint of a stage (:meth:`fit_path`) carries the key
    in its file name, because ``fit`` cannot tell a changed loss from its own fingerprint.
    """

    def __init__(self, directory: Path | None, prefix: str):
        self.dir, self.prefix = directory, prefix

    def path(self, name: str) -> Path | None:
        if self.dir is None:
            return None
        self.dir.mkdir(parents=True, exist_ok=True)
        return self.dir / f"{self.prefix}-{name}.pt"

    def fit_path(self, name: str, key: str) -> Path | None:
        """End-of-epoch ``fit`` checkpoint of stage ``name`` while it trains."""
        return self.path(f"{name}-fit-{key}")

    def load(self, name: str, key: str) -> dict[str, Any] | None:
        p = self.path(name)
        if p is None or not p.exists():
            return None
        state = torch.load(p, map_location="cpu", weights_only=True)
        if state.get("_key") != key:
            return None
        log.info("%s: stage %s reused from %s", self.prefix, name, p)
        return state

    def save(self, name: str, key: str, state: dict[str, Any]) -> None:
        p = self.path(name)
        if p is None:
            return
        buf = io.BytesIO()
        torch.save({**state, "_key": key}, buf)
        atomic_write_bytes(p, buf.getvalue())
        self.fit_path(name, key).unlink(missing_ok=True)
