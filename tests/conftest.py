"""Shared fixtures: small synthetic data so that every test runs in seconds on 2 CPU cores."""
from __future__ import annotations

import pytest
import torch

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def synth():
    """Separable synthetic 32×32 RGB splits, 10 classes (600 train / 200 test)."""
    from advrbd.data import make_synthetic

    return make_synthetic(n_train=600, n_test=200, num_classes=10, size=32, seed=0)
