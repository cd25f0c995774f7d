from .pgd import consistency_kl, frozen_eval, pgd_against_label, random_patch_masks

__all__ = ["consistency_kl", "frozen_eval", "pgd_against_label", "random_patch_masks"]
