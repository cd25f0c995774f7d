"""Persistence of finished stages so an interrupted defense resumes at the last finished one."""
from __future__ import annotations

import io
import logging
import time
from pathlib import Path
from typing import Any

import torch

from ...io import atomic_write_bytes

log = logging.getLogger(__name__)


class StageStore:
    """Saves ``{name: dict of tensors / state_dicts / plain values}`` as ``<dir>/<prefix>-<name>.pt``.

    Loaded with ``weights_only=True``. Without a directory it stores nothing (no resume). ``key`` names the
    settings the stages depend on: a stage saved under another key is not loaded, and the mid-stage ``fit``
    checkpoint of stage ``name`` (:meth:`fit_path`) carries it in its file name, because ``fit`` cannot tell
    a changed loss (e.g. the unlearning bound) from its own fingerprint. Saving a stage removes that file.
    """

    def __init__(self, directory: Path | None, prefix: str, key: str):
        self.dir, self.prefix, self.key = directory, prefix, key
        self._t = time.perf_counter()

    def path(self, name: str) -> Path | None:
        if self.dir is None:
            return None
        self.dir.mkdir(parents=True, exist_ok=True)
        return self.dir / f"{self.prefix}-{name}.pt"

    def fit_path(self, name: str) -> Path | None:
        """End-of-epoch ``fit`` checkpoint of stage ``name`` while it trains."""
        return self.path(f"{name}-fit-{self.key}")

    def load(self, name: str) -> dict[str, Any] | None:
        p = self.path(name)
        if p is None or not p.exists():
            return None
        state = torch.load(p, map_location="cpu", weights_only=True)
        if state.get("_key") != self.key:
            return None
        log.info("%s: stage %s loaded from %s (resumed)", self.prefix, name, p)
        self._t = time.perf_counter()
        return state

    def save(self, name: str, state: dict[str, Any]) -> None:
        # one log line per finished stage: the run's progress where no terminal shows progress bars
        log.info("%s: stage %s finished (%.0f s)", self.prefix, name, time.perf_counter() - self._t)
        self._t = time.perf_counter()
        p = self.path(name)
        if p is None:
            return
        buf = io.BytesIO()
        torch.save({**state, "_key": self.key}, buf)
        atomic_write_bytes(p, buf.getvalue())
        self.fit_path(name).unlink(missing_ok=True)
