"""ISIC 2016-2018 Task 1 layout (docs/ALGORITHMS.md §6): lesion images with 0/255 masks.

Folders under the root are recognised by name (any case): a name containing
``Training``, ``Validation`` or ``Test`` and ``GroundTruth`` holds masks; one with the
same split word and ``Data`` or ``Input`` holds images, e.g.
``ISIC-2017_Training_Data/ISIC_0000000.jpg`` with
``ISIC-2017_Training_Part1_GroundTruth/ISIC_0000000_segmentation.png``. Superpixel
files (``*_superpixels.png``) are ignored. ISIC 2018 Task 1 (the layout the FR authors'
README points to) is read the same way: ``ISIC2018_Task1-2_Training_Input/`` with
``ISIC2018_Task1_Training_GroundTruth/`` (and ``_Validation_``/``_Test_``); the
segmentation task's folders (``Part1``/``Task1``) are preferred over the Task 2 and
Task 3 folders beside them.

Splits: when a Validation or Test folder pair exists, the official folders are the
splits (``"all"`` = every folder) and asking for an absent one is an error. With only
Training folders, the seeded 70/15/15 split of ``segshield.data._pairs`` applies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segshield.data._pairs import Index, image_files, pair_by_stem, probe, split_samples
from segshield.data.errors import MissingFolderError, describe_folder

__all__ = ["index_isic", "decode_binary", "find_split_folders"]

_SPLIT_WORDS = {"train": "training", "val": "validation", "test": "test"}


def decode_binary(masks: list[np.ndarray]) -> np.ndarray:
    """0/255 (or 0/1) lesion mask to 0/1: foreground is ``> 127`` (``> 0`` for 0/1 masks).

    Example:
        >>> decode_binary([np.array([[0, 255], [128, 1]])]).tolist()
        [[0, 1], [1, 0]]
    """
    m = masks[0]
    return (m > (127 if m.max() > 1 else 0)).astype(np.int64)


def find_split_folders(root: Path) -> dict[str, tuple[Path, Path]]:
    """Map split name -> ``(image folder, mask folder)`` for the ISIC folders in ``root``."""
    dirs = [d for d in root.iterdir() if d.is_dir()]
    out: dict[str, tuple[Path, Path]] = {}
    for split, word in _SPLIT_WORDS.items():
        named = [d for d in dirs if word in d.name.lower()]
        masks = [d for d in named if "groundtruth" in d.name.lower()]
        imgs = [
            d
            for d in named
            if "groundtruth" not in d.name.lower()
            and ("data" in d.name.lower() or "input" in d.name.lower())
        ]
        if masks and imgs:
            # prefer the segmentation task's folders (ISIC 2017 also ships Part2/Part3)
            def rank(d: Path) -> tuple[bool, str]:
                n = d.name.lower()
                return ("part1" not in n and "task1" not in n, n)

            out[split] = (min(imgs, key=rank), min(masks, key=rank))
    return out


def index_isic(root: Path, split: str, seed: int) -> Index:
    """Index an ISIC Task 1 root (see the module docstring).

    Raises:
        MissingFolderError: no ISIC folder pair under ``root``, or the requested official
            split folder is absent.
    """
    folders = find_split_folders(root)
    if not folders:
        raise MissingFolderError(
            f"{root}: no ISIC folders found; expected e.g. ISIC-2017_Training_Data and "
            "ISIC-2017_Training_Part1_GroundTruth (Training/Validation/Test, Data or Input), "
            f"{describe_folder(root)}"
        )
    official = len(folders) > 1 or "train" not in folders
    if official:
        wanted = list(folders) if split == "all" else [split]
        missing = [s for s in wanted if s not in folders]
        if missing:
            raise MissingFolderError(
                f"{root}: split {split!r} asked for, but there is no "
                f"*_{_SPLIT_WORDS[missing[0]].title()}_* folder pair; found "
                f"{', '.join(folders)}"
            )
    else:
        wanted = ["train"]
    samples, problems = [], []
    for s in wanted:
        img_dir, mask_dir = folders[s]
        found = pair_by_stem(
            image_files(img_dir),
            image_files(mask_dir),
            mask_suffix="_segmentation",
            image_filter=lambda p: not p.stem.lower().endswith("_superpixels"),
        )
        found = probe(found)
        samples += found.samples
        problems += found.problems
    if not official:
        samples = split_samples(samples, split, seed)
    return Index(samples, problems)
