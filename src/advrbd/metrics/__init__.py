from .detection import auroc, detection_metrics
from .model import attack_success_rate, evaluate

__all__ = ["attack_success_rate", "auroc", "detection_metrics", "evaluate"]
