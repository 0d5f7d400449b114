"""Generic layout (docs/ALGORITHMS.md §6): ``images/NAME.ext`` with ``masks/NAME.png`` (same stem).

Mask encoding: a mask whose values are all in ``{0, 255}`` is binary (255 -> 1);
otherwise its values are class ids, 255 = ignore. The number of classes is inferred
while indexing from up to 32 masks spread over the set (``max id + 1``, at least 2);
an item with a larger id later raises an error naming its file. Class names are
``background``, then ``class1``, ``class2``, ...; the region ``foreground`` is every
class but 0. The seeded 70/15/15 split applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from segshield.data._pairs import Index, index_two_folders
from segshield.data.dataset import Sample
from segshield.utils.imageio import ImageReadError, read_mask

__all__ = ["index_folder", "decode_folder", "infer_classes"]


def decode_folder(masks: list[np.ndarray]) -> np.ndarray:
    """0/255 masks -> 0/1; any other mask is taken as class ids.

    Example:
        >>> decode_folder([np.array([[0, 255]])]).tolist()
        [[0, 1]]
        >>> decode_folder([np.array([[0, 2]])]).tolist()
        [[0, 2]]
    """
    m = masks[0].astype(np.int64)
    if np.isin(m, (0, 255)).all():
        return (m == 255).astype(np.int64)
    return m


def infer_classes(samples: Sequence[Sample]) -> dict:
    """``class_names`` and ``regions`` from up to 32 masks spread over ``samples``."""
    top = 1
    picks = np.unique(np.linspace(0, len(samples) - 1, min(32, len(samples))).round().astype(int))
    for i in picks.tolist():
        s = samples[i]
        if isinstance(s.masks, np.ndarray):
            m = s.masks
        else:
            try:
                m = decode_folder([read_mask(s.masks[0])])
            except ImageReadError:
                continue  # reported when the item is read
        vals = m[m != 255]
        if vals.size:
            top = max(top, int(vals.max()))
    names = ("background",) + tuple(f"class{k}" for k in range(1, top + 1))
    return {"class_names": names, "regions": {"foreground": tuple(range(1, top + 1))}}


def index_folder(root: Path, split: str, seed: int) -> Index:
    """Index ``images/`` + ``masks/`` under ``root``."""
    return index_two_folders(root, split, seed)
