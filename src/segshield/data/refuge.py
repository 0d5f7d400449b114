"""REFUGE (docs/ALGORITHMS.md §6): one mask per image, 0 = cup, 128 = disc rim, 255 = background.

Layout: ``images/NAME.*`` with ``masks/NAME.*`` (as in the DoFE/MiDSS ROI release).
Grey levels map to the nearest of the three codes (``< 64`` cup, ``< 192`` rim, else
background), which also absorbs JPEG or resampling noise; the result is
0 background, 1 rim, 2 cup (docs/ALGORITHMS.md §1). The seeded 70/15/15 split applies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segshield.data._pairs import Index, index_two_folders

__all__ = ["index_refuge", "decode_refuge"]


def decode_refuge(masks: list[np.ndarray]) -> np.ndarray:
    """REFUGE grey levels (0 cup, 128 rim, 255 background) -> 0/1/2.

    Example:
        >>> decode_refuge([np.array([[0, 128, 255]])]).tolist()
        [[2, 1, 0]]
    """
    m = masks[0]
    return np.where(m < 64, 2, np.where(m < 192, 1, 0)).astype(np.int64)


def index_refuge(root: Path, split: str, seed: int) -> Index:
    """Index ``images/`` + ``masks/`` under ``root`` (see the module docstring)."""
    return index_two_folders(root, split, seed)
