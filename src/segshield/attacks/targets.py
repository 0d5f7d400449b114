"""Target masks for targeted attacks (ASMA, PGD, DAG): ``make_targets(kind, masks, ...)``.

Kinds (``list_targets()``):

- ``other-gt``: another image's ground truth, a seeded derangement of the batch (no
  image keeps its own mask), the choice of the ASMA and FR papers.
- ``last-gt``: the last image's ground truth for every image, as the FR authors' code
  does; the last image itself takes the one before it (so no image keeps its own).
- ``empty``: all background (hide the lesion).
- ``full``: every pixel of class ``cls`` (default 1).
- ``shift``: the mask moved by ``dx``, ``dy`` pixels (background fills in).
- ``scale``: the mask scaled by ``factor`` about its foreground centroid.
- ``cup-up``: fundus (0 bg, 1 rim, 2 cup): the cup scaled by ``factor`` (>= 1, default
  1.5) and clipped to the disc, so the cup-to-disc ratio goes up and the glaucoma call
  can flip (:func:`segshield.diagnosis.enlarge_cup`).
- ``lesion-down``: the lesion scaled by ``factor`` (in (0, 1], default 0.5) about its
  centre, so the lesion looks smaller (:func:`segshield.diagnosis.shrink_lesion`).

Ignore pixels (255) stay ignored in every kind.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from segshield._checks import check_choice, check_masks, check_number
from segshield.metrics.segmentation import IGNORE_INDEX

__all__ = ["make_targets", "list_targets", "derangement", "TARGETS"]


def derangement(n: int, seed: int = 0) -> torch.Tensor:
    """A uniformly random permutation of ``0..n-1`` without fixed points, reproducible.

    Args:
        n: length, >= 2.
        seed: random seed. Default 0.

    Returns:
        ``(n,)`` int64 with ``out[i] != i`` for all i.

    Raises:
        ValueError: ``n`` < 2 (one item has no other item to take a mask from).

    Example:
        >>> derangement(2).tolist()
        [1, 0]
    """
    check_number("n", n, low=2, integer=True)
    gen = torch.Generator().manual_seed(int(seed))
    idx = torch.arange(n)
    while True:  # rejection sampling: about e tries on average
        perm = torch.randperm(n, generator=gen)
        if not bool((perm == idx).any()):
            return perm


def _keep_ignore(masks: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    return torch.where(masks == IGNORE_INDEX, masks, out)


def _other_gt(masks: torch.Tensor, seed: int) -> torch.Tensor:
    if masks.shape[0] < 2:
        raise ValueError(
            "masks: 'other-gt' needs at least 2 masks to swap, got a batch of 1; use a "
            "larger batch or pick targets from the dataset with derangement(len(dataset))"
        )
    return masks[derangement(masks.shape[0], seed).to(masks.device)].clone()


def _last_gt(masks: torch.Tensor) -> torch.Tensor:
    if masks.shape[0] < 2:
        raise ValueError(
            "masks: 'last-gt' needs at least 2 masks (the last image takes the one before "
            "it), got a batch of 1; use a larger batch or the whole data set"
        )
    out = masks[-1:].expand_as(masks).clone()
    out[-1] = masks[-2]
    return out


def _empty(masks: torch.Tensor) -> torch.Tensor:
    return _keep_ignore(masks, torch.zeros_like(masks))


def _full(masks: torch.Tensor, cls: int = 1) -> torch.Tensor:
    check_number("cls", cls, low=0, high=254, integer=True)
    return _keep_ignore(masks, torch.full_like(masks, int(cls)))


def _shift(masks: torch.Tensor, dx: int = 0, dy: int = 0) -> torch.Tensor:
    check_number("dx", dx, integer=True)
    check_number("dy", dy, integer=True)
    h, w = masks.shape[-2:]
    dx, dy = int(dx), int(dy)
    out = torch.zeros_like(masks)
    src = masks.masked_fill(masks == IGNORE_INDEX, 0)
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[:, yd, xd] = src[:, ys, xs]
    return _keep_ignore(masks, out)


def _scale_about_centroid(src: torch.Tensor, region: torch.Tensor, factor: float) -> torch.Tensor:
    """Nearest-neighbour scaling of ``src`` about the centroid of ``region``, per sample."""
    b, h, w = src.shape
    dev = src.device
    yy = torch.arange(h, device=dev, dtype=torch.float64).view(1, h, 1)
    xx = torch.arange(w, device=dev, dtype=torch.float64).view(1, 1, w)
    reg = region.double()
    n = reg.flatten(1).sum(1)
    cy = torch.where(n > 0, (reg * yy).flatten(1).sum(1) / n.clamp_min(1), (h - 1) / 2.0)
    cx = torch.where(n > 0, (reg * xx).flatten(1).sum(1) / n.clamp_min(1), (w - 1) / 2.0)
    sy = torch.round(cy.view(b, 1, 1) + (yy - cy.view(b, 1, 1)) / factor)
    sx = torch.round(cx.view(b, 1, 1) + (xx - cx.view(b, 1, 1)) / factor)
    inside = (sy >= 0) & (sy <= h - 1) & (sx >= 0) & (sx <= w - 1)
    flat = (sy.clamp(0, h - 1) * w + sx.clamp(0, w - 1)).long().view(b, -1)
    out = src.flatten(1).gather(1, flat).view(b, h, w)
    return torch.where(inside, out, torch.zeros_like(out))


def _scale(masks: torch.Tensor, factor: float = 1.5) -> torch.Tensor:
    check_number("factor", factor, low=0.0, low_inclusive=False)
    src = masks.masked_fill(masks == IGNORE_INDEX, 0)
    return _keep_ignore(masks, _scale_about_centroid(src, src != 0, float(factor)))


def _cup_up(masks: torch.Tensor, factor: float = 1.5) -> torch.Tensor:
    from segshield.diagnosis import enlarge_cup

    check_number("factor", factor, low=1.0)
    return enlarge_cup(masks, float(factor))


def _lesion_down(masks: torch.Tensor, factor: float = 0.5) -> torch.Tensor:
    from segshield.diagnosis import shrink_lesion

    return shrink_lesion(masks, float(factor))


#: kind -> factory(masks, seed, **params)
TARGETS: dict[str, Callable[..., torch.Tensor]] = {
    "other-gt": lambda m, seed: _other_gt(m, seed),
    "empty": lambda m, seed: _empty(m),
    "full": lambda m, seed, **kw: _full(m, **kw),
    "shift": lambda m, seed, **kw: _shift(m, **kw),
    "scale": lambda m, seed, **kw: _scale(m, **kw),
    "cup-up": lambda m, seed, **kw: _cup_up(m, **kw),
    "lesion-down": lambda m, seed, **kw: _lesion_down(m, **kw),
    "last-gt": lambda m, seed: _last_gt(m),
}

_PARAMS: dict[str, tuple[str, ...]] = {
    "other-gt": (),
    "empty": (),
    "full": ("cls",),
    "shift": ("dx", "dy"),
    "scale": ("factor",),
    "cup-up": ("factor",),
    "lesion-down": ("factor",),
    "last-gt": (),
}


def list_targets() -> dict[str, tuple[str, ...]]:
    """Target kinds and the parameters each accepts.

    Example:
        >>> list_targets()["shift"]
        ('dx', 'dy')
    """
    return dict(_PARAMS)


def make_targets(kind: str, masks: torch.Tensor, *, seed: int = 0, **params) -> torch.Tensor:
    """Build target masks of a given kind from ground-truth masks.

    Args:
        kind: one of ``list_targets()``: ``"other-gt"``, ``"empty"``, ``"full"``,
            ``"shift"``, ``"scale"``, ``"cup-up"``, ``"lesion-down"``, ``"last-gt"`` (see the
            module docstring).
        masks: ``(B, H, W)`` integer ground truth (255 = ignore).
        seed: seed of the ``other-gt`` derangement. Default 0.
        **params: the kind's parameters: ``cls`` (full, default 1), ``dx``/``dy``
            (shift, pixels, default 0), ``factor`` (scale, > 0, default 1.5; cup-up,
            >= 1, default 1.5).

    Shape:
        ``(B, H, W)`` -> ``(B, H, W)`` int64 on the same device.

    Returns:
        Target masks.

    Raises:
        ValueError: unknown kind or parameter (the valid ones are listed), a parameter
            out of range, or ``other-gt``/``last-gt`` on a batch of one.
        TypeError: masks not an integer tensor, or a non-integer pixel shift.

    Example:
        >>> m = torch.tensor([[[0, 1, 1, 0]], [[1, 0, 0, 0]]])
        >>> make_targets("shift", m, dx=1)[0].tolist()
        [[0, 0, 1, 1]]
    """
    check_choice("kind", kind, TARGETS)
    check_masks(masks)
    unknown = sorted(set(params) - set(_PARAMS[kind]))
    if unknown:
        valid = ", ".join(_PARAMS[kind]) or "none"
        raise ValueError(f"{kind}: unknown parameter(s) {', '.join(unknown)}; valid: {valid}")
    check_number("seed", seed, low=0, integer=True)
    return TARGETS[kind](masks.long(), int(seed), **params)
