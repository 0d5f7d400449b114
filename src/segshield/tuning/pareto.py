"""Pareto front of (benign loss, recovered score) pairs: lower loss and higher recovery win.

Used to compare FR tables, JPEG qualities and the paper's table (Liu et al., MICCAI
2020): a defence is on the front when no other one has both a lower-or-equal benign
loss and a higher-or-equal recovery, with at least one strictly better.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["pareto_front"]


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
