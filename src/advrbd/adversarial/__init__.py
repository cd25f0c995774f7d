from .pgd import consistency_kl, random_patch_masks

__all__ = ["consistency_kl", "random_patch_masks"]
