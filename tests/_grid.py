"""The small phantom evaluation grid of the executor tests (local and Ray)."""

from __future__ import annotations

from segshield.evaluation.config import EvalConfig


def grid(ckpt: str, **kw) -> EvalConfig:
    """5 phantom samples in batches of 2 (3 cells), ASMA + adaptive FGSM, FR, median, none.

    ``kw`` replaces any setting (e.g. ``limit=6`` for 3 full cells).
    """
    settings = dict(
        models=[ckpt],
        datasets=["phantom-derm"],
        size=16,
        n=20,
        split="all",
        limit=5,
        batch_size=2,
        attacks=["asma:steps=3"],
        adaptive=["fgsm:eps=0.03"],
        defenses=["fr:pd=30,ac=5,gd=60", "median:k=3"],
    )
    settings.update(kw)
    return EvalConfig(**settings)
