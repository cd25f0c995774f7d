"""Defense registry. Each defense is one module (AdvrBD is a sub-package with one module per stage)."""
from . import advrbd, none  # noqa: F401  (registration)
from . import abl, clp, cutmix, dbr, fineprune, finetuning, neural_cleanse, oracle, scan  # noqa: F401  (registration)
from .base import DEFENSES, Defense, DefenseContext, create_defense

__all__ = ["DEFENSES", "Defense", "DefenseContext", "create_defense"]
