"""Poison-only backdoor attacks (SPEC §4): one small dataclass per attack, registered in :data:`ATTACKS`.

Quick use::

    from advrbd.attacks import create_attack
    attack = create_attack("badnet", rate=0.05, target=1)
    poisoned = attack.poison(splits.train)        # PoisonedDataset with ground truth
    asr_set = attack.make_asr_set(splits.test)    # triggered non-target test images, true labels

Importing this package registers every attack.
"""
# Registration, in SPEC §4 order (the order `advrbd list` and the registry contract tests show).
from . import badnet, blend, sig, wanet, physical, tact, adaptive_blend, adaptive_patch  # noqa: F401,I001
from .base import ATTACKS, Attack, AttackWarning, PatternAttack, RateCapWarning, create_attack
from .poisoned import load_data, load_poisoned, write_poisoned

__all__ = ["ATTACKS", "Attack", "AttackWarning", "PatternAttack", "RateCapWarning", "create_attack", "load_data", "load_poisoned", "write_poisoned"]
