"""Size a table search before it starts (``segshield tune --dry-run``).

The search attacks each split once (image-iterations: images x steps), optionally runs
the attack through the best ``adaptive_top_k`` tables and the paper's (BPDA), and scores
``budget`` tables with two forward passes per validation image (refined clean and
refined adversarial), then the held-out report. Device-hours = image-iterations /
throughput, plus the forward passes at a third of an iteration each.
"""

from __future__ import annotations

__all__ = ["search_work", "format_search_work"]


def search_work(
    n_val: int,
    n_heldout: int,
    steps: int,
    budget: int,
    *,
    adaptive_top_k: int | None = None,
    jpeg: int = 0,
) -> tuple[dict[str, int], int]:
    """Image-iterations per attack run of a search, and its forward passes.

    Args:
        n_val, n_heldout: images of the validation and held-out splits.
        steps: the attack's steps (1 for one-step attacks).
        budget: candidate tables scored.
        adaptive_top_k: with the adaptive objective, the tables re-attacked (plus the
            paper's); ``None`` without it.
        jpeg: JPEG qualities in the held-out report.

    Returns:
        ``(iterations, forwards)``.

    Example:
        >>> search_work(20, 10, 100, 60)
        ({'attack (validation)': 2000, 'attack (held-out)': 1000}, 2500)
    """
    work = {"attack (validation)": n_val * steps, "attack (held-out)": n_heldout * steps}
    if adaptive_top_k is not None:
        work["adaptive attack (BPDA)"] = (adaptive_top_k + 1) * n_val * steps
    forwards = 2 * n_val + 2 * budget * n_val + 2 * n_heldout * (3 + jpeg)
    return work, forwards


def format_search_work(work: dict[str, int], forwards: int, throughput: float, how: str) -> str:
    """The dry run's text: work per part, throughput and device-hours.

    Example:
        >>> print(format_search_work({"attack (validation)": 3600}, 0, 1.0, "given"))
        attack (validation): 3,600 image-iterations
        scoring: 0 forward passes
        throughput: 1.0 image-iterations/s (given)
        estimate: 1 device-hours
    """
    lines = [f"{k}: {v:,} image-iterations" for k, v in work.items()]
    lines.append(f"scoring: {forwards:,} forward passes")
    lines.append(f"throughput: {throughput:.1f} image-iterations/s ({how})")
    hours = (sum(work.values()) + forwards / 3) / throughput / 3600
    lines.append(f"estimate: {hours:.3g} device-hours")
    return "\n".join(lines)
