"""Which items of a data set a run evaluates: all, the first N, or a seeded random N.

``--limit N`` on the command line takes a seeded random subset of N items (a fair
sample of the split: the first items of a folder are often not typical of it);
``--first N`` takes the first N in file order. :func:`subset_indices` chooses the
indices (kept in file order), :class:`Subset` is the view of a data set that holds
only those items and keeps the data set's attributes (``kind``, ``regions``, ...).

Example:
    >>> subset_indices(10, 3, order="first")
    [0, 1, 2]
    >>> idx = subset_indices(10, 3, order="random", seed=0)
    >>> len(idx), idx == sorted(idx), idx == subset_indices(10, 3, order="random", seed=0)
    (3, True, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from segshield._checks import check_choice, check_number
from segshield.choices import SUBSET_ORDERS

__all__ = ["SUBSET_ORDERS", "Subset", "subset_indices", "take_subset", "item_names"]


def subset_indices(
    n_items: int, limit: int | None, *, order: str = "random", seed: int = 0
) -> list[int]:
    """The indices of the items a run keeps, in file order.

    Args:
        n_items: items in the data set, >= 0.
        limit: keep at most this many items (>= 1), or ``None`` for all.
        order: ``"random"``: a uniformly random subset drawn with a private generator
            seeded by ``seed`` (the global random state is left alone); ``"first"``:
            the first ``limit`` items. Default ``"random"``.
        seed: seed of the random subset, >= 0. Default 0.

    Returns:
        Ascending indices; every index when ``limit`` is ``None`` or ``>= n_items``.

    Raises:
        ValueError: ``order`` not one of :data:`SUBSET_ORDERS`, or a number out of range.

    Example:
        >>> subset_indices(5, None), subset_indices(5, 9, order="random")
        ([0, 1, 2, 3, 4], [0, 1, 2, 3, 4])
    """
    check_choice("order", order, SUBSET_ORDERS)
    check_number("n_items", n_items, low=0, integer=True)
    check_number("seed", seed, low=0, integer=True)
    if limit is not None:
        check_number("limit", limit, low=1, integer=True)
    if limit is None or limit >= n_items:
        return list(range(int(n_items)))
    if order == "first":
        return list(range(int(limit)))
    gen = torch.Generator().manual_seed(int(seed))
    return sorted(torch.randperm(int(n_items), generator=gen)[: int(limit)].tolist())


class Subset:
    """A view of the items ``indices`` of a data set, with the data set's attributes.

    Args:
        dataset: anything with ``len`` and ``[i]`` (a :class:`~segshield.data.SegDataset`).
        indices: the kept indices, each in ``0 .. len(dataset) - 1``.

    Raises:
        IndexError: an index outside the data set.

    Example:
        >>> from segshield.data import load_dataset
        >>> ds = load_dataset("phantom-derm", size=16, split="val", n=40)
        >>> sub = Subset(ds, [1, 3])
        >>> len(sub), sub[1]["name"] == ds[3]["name"], sub.regions
        (2, True, {'lesion': (1,)})
    """

    def __init__(self, dataset: Any, indices: Sequence[int]) -> None:
        n = len(dataset)
        bad = [i for i in indices if not 0 <= int(i) < n]
        if bad:
            raise IndexError(
                f"indices: {bad[0]} is outside the data set of {n} item(s); expected 0..{n - 1}"
            )
        self.dataset = dataset
        self.indices = [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.dataset[self.indices[i]]

    def __getattr__(self, name: str) -> Any:
        if name in ("dataset", "indices"):  # not set yet (e.g. during unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)

    @property
    def names(self) -> list[str]:
        """Names of the kept items, in order (as ``SegDataset.names``)."""
        every = item_names(self.dataset)
        return [every[i] for i in self.indices]


def item_names(dataset: Any) -> list[str]:
    """Names of every item: the data set's ``names`` where it has them (without reading
    any image), else each item's ``name``.

    Example:
        >>> item_names([{"name": "a"}, {"name": "b"}])
        ['a', 'b']
    """
    names = getattr(dataset, "names", None)
    if names is not None and not callable(names):
        return [str(n) for n in names]
    return [str(dataset[i]["name"]) for i in range(len(dataset))]


def take_subset(dataset: Any, limit: int | None, *, order: str = "random", seed: int = 0) -> Any:
    """``dataset`` itself when every item is kept, else its :class:`Subset`.

    Args:
        dataset: a data set (``len`` and ``[i]``).
        limit, order, seed: as :func:`subset_indices`.

    Returns:
        The data set or the view of its kept items.

    Raises:
        ValueError: as :func:`subset_indices`.

    Example:
        >>> take_subset([{"name": "a"}, {"name": "b"}], 1, order="first").names
        ['a']
    """
    idx = subset_indices(len(dataset), limit, order=order, seed=seed)
    return dataset if len(idx) == len(dataset) else Subset(dataset, idx)
