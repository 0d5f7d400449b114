"""Shared fixtures: tiny models, the optional real-data folder, CUDA skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of real datasets named by ``SEGSHIELD_SHARED_DATA``; skips when absent."""
    root = os.environ.get("SEGSHIELD_SHARED_DATA")
    if not root or not Path(root).is_dir():
        pytest.skip("SEGSHIELD_SHARED_DATA is not set to a folder of real datasets")
    return Path(root)


@pytest.fixture(params=["cpu", "cuda"])
def device(request) -> torch.device:
    """Run a test on the CPU, and on CUDA when present (skipped otherwise)."""
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA not available")
    return torch.device(request.param)


@pytest.fixture(scope="session")
def small_ckpt(tmp_path_factory) -> str:
    """A seeded, untrained ``small`` model (width 2, one sigmoid channel), saved once."""
    from segshield.models import build_model, save

    torch.manual_seed(0)
    stem = tmp_path_factory.mktemp("model") / "tiny"
    save(build_model("small", num_classes=1, width=2), stem)
    return str(stem.with_suffix(".safetensors"))
