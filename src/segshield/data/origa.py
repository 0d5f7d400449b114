"""ORIGA layout: ``images/NAME.*`` with ``masks/NAME.*`` holding 0 background, 1 rim, 2 cup.

The masks already hold the class ids of docs/ALGORITHMS.md §1 and are used as they are;
any other value is an error naming the file. The seeded 70/15/15 split applies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segshield.data._pairs import Index, index_two_folders

__all__ = ["index_origa", "decode_origa"]


def decode_origa(masks: list[np.ndarray]) -> np.ndarray:
    """ORIGA masks are already 0/1/2; returned as int64 (values are checked by the data set)."""
    return masks[0].astype(np.int64)


def index_origa(root: Path, split: str, seed: int) -> Index:
    """Index ``images/`` + ``masks/`` under ``root``."""
    return index_two_folders(root, split, seed)
