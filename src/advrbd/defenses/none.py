"""Reference row: no defense, standard training on the training set as given."""
from __future__ import annotations

from dataclasses import dataclass

from ..types import DefenseResult
from .base import DEFENSES, Defense, DefenseContext


@DEFENSES.register("none", "no defense: standard training on the data as given (reference row)")
@dataclass
class NoDefense(Defense):
    name = "none"

    def run(self, ctx: DefenseContext) -> DefenseResult:
        return DefenseResult(model=ctx.backdoored_model())
