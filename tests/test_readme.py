"""The README's library example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks, "README has no python example"
    scope: dict = {}
    exec(compile(blocks[0], str(README), "exec"), scope)  # noqa: S102 - our own README
    assert scope["y"].shape == scope["x"].shape
    assert scope["res"].adversarial.shape == scope["x"].shape
    assert scope["adaptive"].adaptive is True
    assert torch.all((scope["adaptive"].adversarial - scope["x"]).abs() <= 8 / 255 + 1e-6)
