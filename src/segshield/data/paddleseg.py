"""PaddleSeg ``optic_disc_seg`` layout: palette PNG masks whose index 1 is the optic disc.

Folders ``images/`` + ``masks/`` or PaddleSeg's own ``JPEGImages/`` + ``Annotations/``
(same stems). Masks are read as palette indices (no RGB conversion): 0 background,
1 disc. When ``train_list.txt``, ``val_list.txt`` and ``test_list.txt`` sit in the root
(PaddleSeg's lists, one ``image mask`` pair per line), they define the splits by stem
(pairs in no list are left out of every split but ``"all"``); otherwise the seeded
70/15/15 split applies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segshield.data._pairs import SPLITS, Index, index_two_folders

__all__ = ["index_paddleseg", "decode_paddleseg"]

_LAYOUTS = (("images", "masks"), ("JPEGImages", "Annotations"))


def decode_paddleseg(masks: list[np.ndarray]) -> np.ndarray:
    """Palette indices as class ids (0 background, 1 disc; checked by the data set)."""
    return masks[0].astype(np.int64)


def index_paddleseg(root: Path, split: str, seed: int) -> Index:
    """Index a PaddleSeg optic-disc folder (see the module docstring)."""
    lists = {s: root / f"{s}_list.txt" for s in SPLITS if s != "all"}
    if split == "all" or not all(p.is_file() for p in lists.values()):
        return index_two_folders(root, split, seed, _LAYOUTS)
    found = index_two_folders(root, "all", seed, _LAYOUTS)
    lines = lists[split].read_text(encoding="utf-8").split("\n")
    stems = {Path(line.split()[0]).stem.lower() for line in lines if line.strip()}
    return Index([s for s in found.samples if s.name.lower() in stems], found.problems)
