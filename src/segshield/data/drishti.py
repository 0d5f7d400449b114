"""Drishti-GS1 layout (docs/ALGORITHMS.md §6): fundus images with soft disc and cup maps.

Images ``NAME.png`` anywhere under the root (recursively; e.g. ``images/`` or the
release's ``Training/Images/``) pair with ``NAME_ODsegSoftmap.png`` (disc) and
``NAME_cupsegSoftmap.png`` (cup), also searched recursively. The soft maps hold the
experts' agreement (0..255); each is thresholded at half its own maximum (docs/ALGORITHMS.md §6),
so the default keeps pixels marked by at least half of the annotators. Disc and cup
combine into 0 background, 1 rim (disc minus cup), 2 cup (a cup pixel is a disc
pixel). The seeded 70/15/15 split applies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segshield.data._pairs import Index, image_files, probe, split_samples
from segshield.data.dataset import Sample
from segshield.data.errors import MissingFolderError, describe_folder

__all__ = ["index_drishti", "decode_softmaps"]

_OD, _CUP = "_odsegsoftmap", "_cupsegsoftmap"


def decode_softmaps(masks: list[np.ndarray]) -> np.ndarray:
    """``[disc soft map, cup soft map]`` -> 0/1/2, each map thresholded at half its max.

    Example:
        >>> od = np.array([[0, 128, 255, 255]]); cup = np.array([[0, 0, 64, 255]])
        >>> decode_softmaps([od, cup]).tolist()
        [[0, 1, 1, 2]]
    """
    od, cup = masks
    disc = (od >= 0.5 * od.max()) & (od > 0)
    cupm = (cup >= 0.5 * cup.max()) & (cup > 0)
    return np.where(cupm, 2, np.where(disc, 1, 0)).astype(np.int64)


def index_drishti(root: Path, split: str, seed: int) -> Index:
    """Index a Drishti-GS1 folder (see the module docstring).

    Raises:
        MissingFolderError: no soft maps under ``root``.
    """
    files = image_files(root, recursive=True)
    od = {p.stem.lower()[: -len(_OD)]: p for p in files if p.stem.lower().endswith(_OD)}
    cup = {p.stem.lower()[: -len(_CUP)]: p for p in files if p.stem.lower().endswith(_CUP)}
    if not od:
        raise MissingFolderError(
            f"{root}: no *_ODsegSoftmap.png found; expected Drishti-GS1 images with "
            f"NAME_ODsegSoftmap.png and NAME_cupsegSoftmap.png, {describe_folder(root)}"
        )
    images = [p for p in files if "softmap" not in p.stem.lower()]
    problems: list[str] = []
    samples: list[Sample] = []
    seen = set()
    for p in images:
        key = p.stem.lower()
        if key not in od and key not in cup:
            continue  # not a Drishti image (e.g. a preview); not a pair
        seen.add(key)
        missing = [w for w, t in (("ODsegSoftmap", od), ("cupsegSoftmap", cup)) if key not in t]
        if missing:
            problems.append(f"{p}: no {p.stem}_{missing[0]}.png found; skipped")
            continue
        samples.append(Sample(p.stem, p, (od[key], cup[key])))
    for key, p in sorted({**od, **cup}.items()):
        if key not in seen:
            problems.append(f"{p}: soft map without an image named {key}.*; skipped")
    found = probe(Index(samples, problems))
    return Index(split_samples(found.samples, split, seed), found.problems)
