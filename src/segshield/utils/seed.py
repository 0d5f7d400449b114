"""Reproducibility: one call seeds Python, numpy and torch."""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["seed_everything"]


def seed_everything(seed: int) -> torch.Generator:
    """Seed ``random``, numpy and torch (CPU and CUDA); return a CPU generator with that seed."""
    random.seed(seed)
    np.random.seed(seed % (2**32))  # noqa: NPY002 - seeds legacy global users too
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
