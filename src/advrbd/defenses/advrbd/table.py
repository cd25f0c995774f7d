"""The per-sample table AdvrBD's stages fill in; ``samples.csv`` is this table.

One row per training sample (indices into the full training set), one column per fact a stage learned about
it, so a user can read why each sample got its verdict and its action in relearning.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

# Relearning actions (policy.py), stored as small ints in the ``action`` column.
ACTIONS = ("train", "relabel", "leave_out", "rejoin")
TRAIN, RELABEL, LEAVE_OUT, REJOIN = range(len(ACTIONS))

COLUMNS = {
    "consistency": "perturbation-consistency KL of the warm-up model (paper Eq. 3; lower = more robust)",
    "pool_round": "enhancement round whose partition moved the sample to the surely-clean pool (-1: never)",
    "guarded": "in the latent subgroup of a class with evidence of a backdoor (guard.py)",
    "margin": "smallest given-label margin over the enhanced models (> 0: every one keeps the label)",
    "suspected": "the verdict: poisoned (guarded, or kept by the enhanced models in a class with evidence)",
    "review": "kept by the enhanced models in a class without evidence (a low-confidence flag; not the verdict)",
    "clean_pred": "the clean model's predicted class (-1: not computed)",
    "clean_conf": "the clean model's top probability",
    "action": "what relearning did with the sample: " + ", ".join(ACTIONS),
    "label": "the label relearning used",
}


@dataclass
class SampleTable:
    """Columns of length ``n`` (CPU tensors). ``margins`` holds one column per enhancement round."""

    n: int
    columns: dict[str, torch.Tensor] = field(default_factory=dict)
    margins: list[torch.Tensor] = field(default_factory=list)

    def __post_init__(self) -> None:
        defaults = {"consistency": torch.full((self.n,), float("nan")),
                    "pool_round": torch.full((self.n,), -1, dtype=torch.long),
                    "guarded": torch.zeros(self.n, dtype=torch.bool),
                    "margin": torch.full((self.n,), float("nan")),
                    "suspected": torch.zeros(self.n, dtype=torch.bool),
                    "review": torch.zeros(self.n, dtype=torch.bool),
                    "clean_pred": torch.full((self.n,), -1, dtype=torch.long),
                    "clean_conf": torch.full((self.n,), float("nan")),
                    "action": torch.full((self.n,), TRAIN, dtype=torch.long),
                    "label": torch.full((self.n,), -1, dtype=torch.long)}
        self.columns = {**defaults, **self.columns}

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.columns[name]

    def __setitem__(self, name: str, value: torch.Tensor) -> None:
        if name not in COLUMNS:
            raise KeyError(f"unknown column {name!r}")
        if len(value) != self.n:
            raise ValueError(f"column {name!r} has {len(value)} rows, the table {self.n}")
        self.columns[name] = value.detach().cpu()

    def state(self) -> dict[str, torch.Tensor]:
        """Tensors only (saved with ``weights_only`` checkpoints)."""
        return {**self.columns, **{f"margin_round{r + 1}": m for r, m in enumerate(self.margins)}}

    @classmethod
    def from_state(cls, n: int, state: dict[str, torch.Tensor]) -> "SampleTable":
        rounds = sorted((k for k in state if k.startswith("margin_round")), key=lambda k: int(k[12:]))
        return cls(n, {k: v for k, v in state.items() if k in COLUMNS}, [state[k] for k in rounds])

    def rows(self) -> dict[str, list]:
        """Plain lists per column for samples.csv (actions by name, rounds' margins as margin_roundK)."""
        out = {k: v.tolist() for k, v in self.columns.items()}
        out["action"] = [ACTIONS[a] for a in out["action"]]
        out.update({f"margin_round{r + 1}": m.tolist() for r, m in enumerate(self.margins)})
        return out
