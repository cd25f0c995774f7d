"""AdvrBD as a sub-package, one module per stage: scoring, enhance, identify, retrain; defense.py
orchestrates them with resumable stages."""
from .defense import AdvrBD
from .settings import AdvrBDSettings

__all__ = ["AdvrBD", "AdvrBDSettings"]
