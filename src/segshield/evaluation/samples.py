"""The items an evaluation run scores: all, a seeded random ``limit``, or the first ``limit``.

:func:`evaluated_items` applies :attr:`EvalConfig.limit` and :attr:`EvalConfig.subset`
(``"first"``: file order; ``"random"``: a subset drawn with the run's seed, the
``--limit`` of the command line) to a loaded data set, and records the names of the
chosen items in the run's manifest (``samples``: data set -> names), so a reader can
tell which images a summary covers.
"""

from __future__ import annotations

from typing import Any

from segshield.data.subset import item_names, take_subset
from segshield.evaluation.config import EvalConfig
from segshield.evaluation.store import ResultStore

__all__ = ["evaluated_items"]


def evaluated_items(dataset: Any, config: EvalConfig, store: ResultStore | None, label: str) -> Any:
    """The data set's evaluated items; with a ``limit``, their names go to the manifest.

    Args:
        dataset: a loaded data set (``len``, ``[i]``, ``names``).
        config: the run's settings (``limit``, ``subset``, ``seed``).
        store: the run's results store (its manifest gets ``samples[label]``), or
            ``None`` where no store is open (a worker of a distributed run, whose driver
            records the names).
        label: the data set's name in the rows (``dataset_label``).

    Returns:
        ``dataset`` itself, or a :class:`~segshield.data.subset.Subset` view of it.

    Example:
        >>> import tempfile
        >>> cfg = EvalConfig(models=["m"], datasets=["d"], limit=2, subset="first")
        >>> store = ResultStore(tempfile.mkdtemp())
        >>> items = [{"name": n} for n in "abc"]
        >>> len(evaluated_items(items, cfg, store, "d")), store.manifest()["samples"]
        (2, {'d': ['a', 'b']})
    """
    ds = take_subset(dataset, config.limit, order=config.subset, seed=config.seed)
    if config.limit is not None and store is not None:
        samples = dict((store.manifest() or {}).get("samples") or {})
        samples[label] = item_names(ds)
        store.update_manifest(samples=samples)
    return ds
