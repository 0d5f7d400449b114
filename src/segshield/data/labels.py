"""Image-level labels of data-set items for the classification tasks.

Two tasks, each with two classes:

- ``glaucoma`` (fundus): 1 when the vertical cup-to-disc ratio reaches the threshold
  (docs/ALGORITHMS.md §5, 0.6 by default). The CDR is the item's ``"cdr"`` (the fundus phantom's
  drawn ratio) or, for real data without one, the CDR of the ground-truth mask
  (:func:`segshield.diagnosis.cdr_from_mask`), e.g. ORIGA, Drishti-GS1, REFUGE.
- ``malignancy`` (dermoscopy): the item's ``"malignant"`` label (the dermoscopy phantom
  sets it from asymmetry and colour variegation, the "A" and "C" of the ABCD rule).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from segshield._checks import check_choice, check_number
from segshield.diagnosis import cdr_from_mask

__all__ = [
    "TASKS",
    "CLASS_NAMES",
    "task_for_kind",
    "KIND_TASK",
    "item_label",
    "dataset_labels",
]

#: task -> class names (index = label).
CLASS_NAMES: dict[str, tuple[str, str]] = {
    "glaucoma": ("normal", "glaucoma"),
    "malignancy": ("benign", "malignant"),
}
TASKS = tuple(CLASS_NAMES)

#: data-set kind -> the task its items are labelled for.
KIND_TASK = {
    "phantom-fundus": "glaucoma",
    "phantom-fundus-roi": "glaucoma",
    "drishti": "glaucoma",
    "refuge": "glaucoma",
    "origa": "glaucoma",
    "phantom-derm": "malignancy",
}


def task_for_kind(kind: str) -> str:
    """The classification task of a data-set kind.

    Args:
        kind: ``SegDataset.kind``, e.g. ``"phantom-fundus"`` or ``"phantom-derm"``.

    Returns:
        ``"glaucoma"`` or ``"malignancy"``.

    Raises:
        ValueError: a kind without image-level labels (the valid kinds are listed).

    Example:
        >>> task_for_kind("origa")
        'glaucoma'
    """
    if kind not in KIND_TASK:
        valid = ", ".join(KIND_TASK)
        raise ValueError(
            f"data: expected a data set with image-level labels ({valid}), got kind "
            f"{kind!r}; real dermoscopy sets carry no malignancy label here"
        )
    return KIND_TASK[kind]


def item_label(item: Mapping[str, Any], task: str, threshold: float = 0.6) -> int:
    """Label of one data-set item for ``task``.

    Args:
        item: a data-set item (``"mask"``, ``"name"`` and, when present, ``"cdr"`` or
            ``"malignant"``).
        task: ``"glaucoma"`` or ``"malignancy"``.
        threshold: glaucoma CDR threshold in ``[0, 1]``. Default 0.6 (docs/ALGORITHMS.md §5).

    Returns:
        0 or 1.

    Raises:
        ValueError: unknown task, a threshold out of range, a fundus item whose mask has
            no disc (no CDR), or a dermoscopy item without ``"malignant"``; the message
            names the item.

    Example:
        >>> item_label({"cdr": 0.7, "name": "a"}, "glaucoma")
        1
    """
    check_choice("task", task, TASKS)
    check_number("threshold", threshold, low=0.0, high=1.0)
    name = item.get("name", "?")
    if task == "malignancy":
        if "malignant" not in item:
            raise ValueError(
                f"{name}: no 'malignant' label; only the phantom-derm data set carries one"
            )
        return int(bool(item["malignant"]))
    if "cdr" in item:
        cdr = float(item["cdr"])
    elif "mask" in item:
        cdr = float(cdr_from_mask(torch.as_tensor(item["mask"])))
    else:
        raise ValueError(f"{name}: expected a 'cdr' value or a fundus 'mask', got neither")
    if math.isnan(cdr):
        raise ValueError(
            f"{name}: the ground-truth mask has no optic disc, so no CDR and no glaucoma "
            "label; remove the item or fix its mask"
        )
    return int(cdr >= threshold)


def dataset_labels(dataset: Sequence[Mapping[str, Any]], task: str, threshold: float = 0.6):
    """Labels of every item, as a ``(N,)`` int64 tensor (reads each item once).

    Args:
        dataset: indexable items (a ``SegDataset`` or a list of item dicts).
        task: ``"glaucoma"`` or ``"malignancy"``.
        threshold: glaucoma CDR threshold in ``[0, 1]``. Default 0.6.

    Returns:
        ``(N,)`` int64 tensor of 0/1.

    Raises:
        ValueError: as :func:`item_label`.

    Example:
        >>> dataset_labels([{"cdr": 0.3}, {"cdr": 0.65}], "glaucoma").tolist()
        [0, 1]
    """
    return torch.tensor(
        [item_label(dataset[i], task, threshold) for i in range(len(dataset))], dtype=torch.long
    )
