"""Generic layout (docs/ALGORITHMS.md §6): ``images/NAME.ext`` with ``masks/NAME.png`` (same stem).

Mask encoding: a mask whose values are all in ``{0, 255}`` is binary (255 -> 1);
otherwise its values are class ids, 255 = ignore. The number of classes is inferred
while indexing from up to 32 masks spread over the set (``max id + 1``, at least 2);
an item with a larger id later raises an error naming its file. Class names are
``background``, then ``class1``, ``class2``, ...; the region ``foreground`` is every
class but 0. The seeded 70/15/15 split applies.

Spec options (``folder:PATH,key=value,...``):

- ``binarize=T`` (0..254): every mask becomes ``value > T`` -> 1, else 0. For binary
  masks saved with lossy compression (JPEG), whose edges hold grey values.
- ``names=A/B/...``: the class names (at least two, ``A`` is class 0); the class
  count is then ``len(names)`` instead of being inferred.

Masks that look lossy-compressed (more than 8 distinct values, nearly all of them close
to two to four levels at least 64 apart, e.g. 0 and 255 with JPEG ringing at the edges)
are refused unless ``binarize`` is given: read as class ids they would give up to 255
classes.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from segshield.data._pairs import Index, index_two_folders
from segshield.data.dataset import MaskDecoder, Sample
from segshield.data.errors import DatasetError
from segshield.utils.imageio import ImageReadError, read_mask

__all__ = [
    "index_folder",
    "decode_folder",
    "binarize_masks",
    "folder_decoder",
    "lossy_levels",
    "infer_classes",
    "MANY_CLASSES",
]

#: more inferred classes than this, without class names, is flagged as a likely mistake
MANY_CLASSES = 8
_BAND = 48  # half-width of the value band around a level of a lossy mask
_MIN_GAP = 64  # levels of a lossy mask lie at least this far apart


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


def binarize_masks(masks: list[np.ndarray], threshold: int) -> np.ndarray:
    """``mask > threshold`` -> 1, else 0 (the ``binarize=T`` spec option).

    Example:
        >>> binarize_masks([np.array([[0, 3, 127, 128, 250]])], 127).tolist()
        [[0, 0, 0, 1, 1]]
    """
    return (masks[0] > threshold).astype(np.int64)


def folder_decoder(binarize: int | None) -> MaskDecoder:
    """The mask decoder of a ``folder`` spec: :func:`decode_folder` or a threshold.

    Returns a picklable callable (data-loader workers may copy it).

    Example:
        >>> folder_decoder(100)([np.array([[90, 110]])]).tolist()
        [[0, 1]]
    """
    if binarize is None:
        return decode_folder
    return functools.partial(binarize_masks, threshold=int(binarize))


def lossy_levels(mask: np.ndarray) -> tuple[int, ...] | None:
    """The levels of a mask that looks lossy-compressed, or None (see the module docstring).

    Args:
        mask: raw ``(H, W)`` mask values as read from the file.

    Returns:
        Two to four level values (ascending) when the mask has more than 8 distinct values
        in ``0..255`` and at least 90 % of its pixels lie within 48 of levels that each hold
        at least 1 % of the pixels and lie at least 64 apart; None otherwise.

    Example:
        >>> m = np.zeros((10, 10), np.int64); m[:, 5:] = 255
        >>> m[:, 4] = np.arange(10) * 3; m[:, 5] = 250 - np.arange(10)
        >>> lossy_levels(m), lossy_levels((m > 127) * 255), lossy_levels(m % 12)
        ((0, 255), None, None)
    """
    if mask.size == 0 or mask.min() < 0 or mask.max() > 255:
        return None
    hist = np.bincount(mask.ravel().astype(np.int64), minlength=256)
    if np.count_nonzero(hist) <= 8:
        return None
    total = int(hist.sum())
    levels: list[int] = []
    for v in np.argsort(-hist, kind="stable").tolist():
        if hist[v] < 0.01 * total:
            break
        if all(abs(v - u) > _BAND for u in levels):
            levels.append(v)
    levels.sort()
    if not 2 <= len(levels) <= 4 or min(np.diff(levels)) < _MIN_GAP:
        return None
    band = np.zeros(256, bool)
    for u in levels:
        band[max(u - _BAND, 0) : u + _BAND + 1] = True
    return tuple(levels) if hist[band].sum() >= 0.9 * total else None


def _lossy_error(path: Path, mask: np.ndarray, levels: tuple[int, ...]) -> DatasetError:
    n = int(np.count_nonzero(np.bincount(mask.ravel().astype(np.int64), minlength=256)))
    ids = mask[mask != 255]
    k = int(ids.max()) + 1 if ids.size else 1
    near = ", ".join(str(v) for v in levels[:-1]) + f" and {levels[-1]}"
    if len(levels) == 2:
        fix = (
            f"add ',binarize={(levels[0] + levels[-1]) // 2}' to the data spec to threshold "
            "the masks (or save them losslessly, as PNG)"
        )
    else:
        fix = (
            "save the masks losslessly (PNG) with one value per class, or add "
            "',binarize=T' to the data spec to keep two classes"
        )
    return DatasetError(
        f"{path}: the mask has {n} grey levels clustered near {near}, as lossy compression "
        f"(JPEG) leaves at the edges; read as class ids they would make {k} classes; {fix}"
    )


def infer_classes(
    samples: Sequence[Sample],
    decode: MaskDecoder = decode_folder,
    names: Sequence[str] | None = None,
) -> dict:
    """``class_names`` and ``regions`` from up to 32 masks spread over ``samples``.

    Args:
        samples: the indexed pairs.
        decode: the mask decoder (:func:`folder_decoder`).
        names: class names given in the spec, or None to infer ``class1``, ``class2``, ...

    Returns:
        ``{"class_names": (...), "regions": {"foreground": (1, ..., K-1)}}``.

    Raises:
        DatasetError: a sampled mask looks lossy-compressed (:func:`lossy_levels`) and
            ``decode`` is :func:`decode_folder`; the message names the file and the fix.
    """
    if names is not None:
        return {"class_names": tuple(names), "regions": {"foreground": tuple(range(1, len(names)))}}
    top = 1
    picks = np.unique(np.linspace(0, len(samples) - 1, min(32, len(samples))).round().astype(int))
    for i in picks.tolist():
        s = samples[i]
        if isinstance(s.masks, np.ndarray):
            m = s.masks
        else:
            try:
                raw = [read_mask(p) for p in s.masks]
            except ImageReadError:
                continue  # reported when the item is read
            levels = lossy_levels(raw[0]) if decode is decode_folder else None
            if levels is not None:
                raise _lossy_error(s.masks[0], raw[0], levels)
            m = decode(raw)
        vals = m[m != 255]
        if vals.size:
            top = max(top, int(vals.max()))
    names = ("background",) + tuple(f"class{k}" for k in range(1, top + 1))
    return {"class_names": names, "regions": {"foreground": tuple(range(1, top + 1))}}


def index_folder(root: Path, split: str, seed: int) -> Index:
    """Index ``images/`` + ``masks/`` under ``root``."""
    return index_two_folders(root, split, seed)
