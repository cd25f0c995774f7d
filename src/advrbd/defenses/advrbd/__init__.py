"""AdvrBD as a sub-package: one module per stage (scoring, guard, enhance, identify, retrain, policy), the
per-sample table they fill (table.py) and the resumable pipeline that runs them (defense.py, steps.py)."""
from .defense import AdvrBD

__all__ = ["AdvrBD"]
