"""PH2 layout (docs/ALGORITHMS.md §6): dermoscopy BMP images with 1-bit lesion masks.

Two layouts are recognised:

- the release: ``.../IMD002/IMD002_Dermoscopic_Image/IMD002.bmp`` with
  ``.../IMD002/IMD002_lesion/IMD002_lesion.bmp`` (searched recursively);
- flat: ``images/IMD002.bmp`` with ``masks/IMD002_lesion.bmp``.

Masks are 1-bit (True = lesion) or 0/255; both decode to 0/1. PH2 has no official
split: the seeded 70/15/15 split applies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segshield.data._pairs import Index, image_files, pair_by_stem, probe, split_samples
from segshield.data.errors import MissingFolderError, describe_folder
from segshield.data.isic import decode_binary

__all__ = ["index_ph2", "decode_ph2"]


def decode_ph2(masks: list[np.ndarray]) -> np.ndarray:
    """1-bit or 0/255 PH2 lesion mask to 0/1 (same rule as ISIC)."""
    return decode_binary(masks)


def index_ph2(root: Path, split: str, seed: int) -> Index:
    """Index a PH2 folder (either layout; see the module docstring).

    Raises:
        MissingFolderError: neither layout is present under ``root``.
    """
    if (root / "images").is_dir() and (root / "masks").is_dir():
        images, masks = image_files(root / "images"), image_files(root / "masks")
    else:
        files = image_files(root, recursive=True)
        images = [p for p in files if p.parent.name.lower().endswith("_dermoscopic_image")]
        masks = [p for p in files if p.parent.name.lower().endswith("_lesion")]
        if not images:
            raise MissingFolderError(
                f"{root}: no PH2 images found; expected images/ + masks/ or the release "
                f"layout IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp, {describe_folder(root)}"
            )
    found = probe(pair_by_stem(images, masks, mask_suffix="_lesion"))
    return Index(split_samples(found.samples, split, seed), found.problems)
