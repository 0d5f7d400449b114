"""Pareto front of (benign loss, recovered score) pairs: lower loss and higher recovery win.

Used to compare FR tables, JPEG qualities and the paper's table (Liu et al., MICCAI
2020): a defence is on the front when no other one has both a lower-or-equal benign
loss and a higher-or-equal recovery, with at least one strictly better.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["dominating", "pareto_front"]


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points, sorted by increasing benign loss.

    Args:
        points: ``(benign_loss, recovered)`` pairs; lower loss and higher recovery are
            better. Points with a NaN coordinate are never on the front.

    Returns:
        Indices into ``points``; of exact duplicates only the first is kept.

    Raises:
        ValueError: a point is not a pair of numbers.

    Example:
        >>> pareto_front([(0.0, 0.5), (0.1, 0.4), (0.05, 0.9), (0.2, 0.95)])
        [0, 2, 3]
    """
    pts = []
    for i, p in enumerate(points):
        if len(p) != 2:
            raise ValueError(f"points[{i}]: expected a (benign_loss, recovered) pair, got {p!r}")
        x, y = float(p[0]), float(p[1])
        if not (math.isnan(x) or math.isnan(y)):
            pts.append((x, -y, i))
    pts.sort()
    front: list[int] = []
    best_y = math.inf  # best (lowest) -recovery seen at lower or equal loss
    for _x, neg_y, i in pts:
        if neg_y < best_y:
            front.append(i)
            best_y = neg_y
    return front


def dominating(points: Sequence[tuple[float, float]], index: int) -> list[int]:
    """Indices of the points that dominate ``points[index]``.

    A point dominates another when its benign loss is lower or equal and its recovery
    higher or equal, with at least one of the two strictly better (NaN never does).

    Args:
        points: ``(benign_loss, recovered)`` pairs, as for :func:`pareto_front`.
        index: the point to compare the others with, ``0 <= index < len(points)``.

    Returns:
        Indices into ``points``, increasing.

    Raises:
        IndexError: ``index`` out of range.

    Example:
        >>> dominating([(0.01, 0.5), (0.0, 0.5), (0.01, 0.6), (0.0, 0.4)], 0)
        [1, 2]
    """
    if not 0 <= index < len(points):
        raise IndexError(f"index: expected 0 <= index < {len(points)}, got {index}")
    x0, y0 = (float(v) for v in points[index])
    out = []
    for j, (x, y) in enumerate(points):
        x, y = float(x), float(y)
        if x <= x0 and y >= y0 and (x < x0 or y > y0):
            out.append(j)
    return out
