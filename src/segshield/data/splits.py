"""A split of a data set as one batch of tensors, and one split divided into two halves.

:func:`load_split` reads a split of a data set spec (see :func:`~segshield.data.load_dataset`
for the seeded 70/15/15 splits) into stacked ``(B, C, H, W)`` images and ``(B, H, W)``
masks, as the table search and the frequency analysis take them.
:func:`disjoint_halves` and :func:`divide_split` cut one split into two disjoint seeded
halves, for data that has a single labelled split (e.g. the ISIC 2017 validation set
here): one half to choose on, the other to report on.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from segshield._checks import check_images, check_masks, check_number

__all__ = ["SplitTensors", "load_split", "stack_split", "disjoint_halves", "divide_split"]


class SplitTensors(NamedTuple):
    """A split as tensors: ``images (B, C, H, W)``, ``masks (B, H, W)``, named regions."""

    images: torch.Tensor
    masks: torch.Tensor
    regions: dict[str, tuple[int, ...]]


def stack_split(
    dataset: Any, limit: int | None = None, *, split: str = "all", arg_prefix: str = ""
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``limit`` items of a data set stacked into one batch.

    Args:
        dataset: a :class:`~segshield.data.SegDataset` (items with ``"image"`` and
            ``"mask"``).
        limit: at most this many items (default None: all).
        split: the split's name, for messages. Default ``"all"``.
        arg_prefix: prefix of the argument names in messages (``"--"`` for the CLI).

    Shape:
        Returns images ``(B, C, H, W)`` and masks ``(B, H, W)``.

    Returns:
        ``(images, masks)`` on the CPU.

    Raises:
        ValueError: fewer than 2 items, or images of different sizes.

    Example:
        >>> from segshield.data import load_dataset
        >>> x, m = stack_split(load_dataset("phantom-derm", size=16, split="val", n=20))
        >>> tuple(x.shape), tuple(m.shape)
        ((3, 3, 16, 16), (3, 16, 16))
    """
    n = len(dataset) if limit is None else min(len(dataset), limit)
    if n < 2:
        raise ValueError(
            f"{arg_prefix}data: split {split!r} has {len(dataset)} item(s); need at least 2"
        )
    items = [dataset[i] for i in range(n)]
    shapes = {tuple(it["image"].shape) for it in items}
    if len(shapes) > 1:
        raise ValueError(
            f"{arg_prefix}size: images of split {split!r} differ in size {sorted(shapes)}; "
            f"pass {arg_prefix}size"
        )
    return torch.stack([it["image"] for it in items]), torch.stack([it["mask"] for it in items])


def load_split(
    spec: str,
    split: str = "all",
    *,
    size: int | tuple[int, int] | None = None,
    seed: int = 0,
    n: int | None = None,
    limit: int | None = None,
    device: str | torch.device = "cpu",
    arg_prefix: str = "",
) -> SplitTensors:
    """A split of a data set spec as tensors on ``device``, with the data set's regions.

    Args:
        spec: ``"KIND[:PATH]"`` (see :func:`~segshield.data.load_dataset`).
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``. Default ``"all"``.
        size: image size (default None: native; phantoms 128).
        seed: seed of the phantoms and of the split. Default 0.
        n: phantoms: images generated before the split; real data: the first ``n``.
        limit: at most this many items of the split. Default None: all.
        device: where the tensors go. Default ``"cpu"``.
        arg_prefix: prefix of the argument names in messages (``"--"`` for the CLI).

    Returns:
        :class:`SplitTensors`.

    Raises:
        ValueError: a bad spec or split, fewer than 2 items, or images of different sizes.
        FileNotFoundError: a missing data folder.

    Example:
        >>> s = load_split("phantom-derm", "val", size=16, n=20, limit=2)
        >>> tuple(s.images.shape), s.regions
        ((2, 3, 16, 16), {'lesion': (1,)})
    """
    from segshield.data.registry import load_dataset

    extra = {} if n is None else {"n": n}
    ds = load_dataset(spec, size=size, split=split, seed=seed, **extra)
    images, masks = stack_split(ds, limit, split=split, arg_prefix=arg_prefix)
    return SplitTensors(images.to(device), masks.to(device), dict(ds.regions))


def disjoint_halves(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded permutation of ``range(n)`` cut in two: ``n // 2`` indices and the rest.

    Args:
        n: number of items, >= 2.
        seed: seed of the permutation (a private generator; the global one is left alone).

    Returns:
        Two disjoint ``int64`` index tensors that together hold ``0 .. n - 1``.

    Raises:
        ValueError: ``n < 2``.

    Example:
        >>> a, b = disjoint_halves(5, seed=0)
        >>> len(a), len(b), sorted(a.tolist() + b.tolist())
        (2, 3, [0, 1, 2, 3, 4])
    """
    check_number("n", n, low=2, integer=True)
    check_number("seed", seed, integer=True)
    perm = torch.randperm(int(n), generator=torch.Generator().manual_seed(int(seed)))
    half = int(n) // 2
    return perm[:half], perm[half:]


def divide_split(
    images: torch.Tensor, masks: torch.Tensor, seed: int = 0
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """One split divided into two disjoint seeded halves (:func:`disjoint_halves`).

    Args:
        images: ``(B, C, H, W)``, B >= 2.
        masks: ``(B, H, W)``.
        seed: seed of the division. Default 0.

    Returns:
        ``((images_a, masks_a), (images_b, masks_b))``, ``B // 2`` items and the rest.

    Raises:
        TypeError, ValueError: bad images or masks, or fewer than 2 images.

    Example:
        >>> x = torch.rand(4, 1, 8, 8); m = torch.zeros(4, 8, 8, dtype=torch.long)
        >>> (xa, ma), (xb, mb) = divide_split(x, m, seed=1)
        >>> xa.shape[0], xb.shape[0]
        (2, 2)
    """
    check_images(images, "images")
    check_masks(masks, "masks", like=images)
    first, second = disjoint_halves(images.shape[0], seed)
    return (images[first], masks[first]), (images[second], masks[second])
