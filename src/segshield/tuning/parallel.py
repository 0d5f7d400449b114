"""Candidate FR tables scored in parallel as Ray tasks (``segshield tune --executor ray``).

The search (:mod:`segshield.tuning.search`) computes the adversarial images once, on the
driver; :class:`RayTableScorer` puts the model, the validation images, their
adversarial versions and the masks into Ray's object store once (shared by every task)
and scores each batch of candidate tables in chunks of whole table groups
(:func:`~segshield.tuning.scoring.tables_dice` refines ``variants_per_pass`` tables
together), so every chunk runs the very forward passes the local search would and the
Dice values, hence the chosen table, are the same. Ray is imported lazily
(:func:`segshield.utils.cluster.import_ray`: a missing Ray names ``segshield[ray]``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from segshield._checks import check_number
from segshield.tuning.scoring import tables_dice
from segshield.utils.cluster import import_ray

__all__ = ["RayTableScorer", "score_chunk"]

#: Tables refined together by :func:`tables_dice` (its default); chunks are multiples.
GROUP = 8


def score_chunk(model, images, adversarial, masks, tables, regions, pad, batch_size):
    """Dice on the refined clean and the refined adversarial images, per table and image.

    Shape:
        images, adversarial: ``(B, C, H, W)``; tables ``(V, C, 8, 8)`` or ``(V, 8, 8)``;
        returns two ``(V, B)`` float64 tensors.
    """
    kw = {"pad": pad, "batch_size": batch_size, "variants_per_pass": GROUP}
    benign = tables_dice(model, images, masks, tables, regions, **kw)
    recovered = tables_dice(model, adversarial, masks, tables, regions, **kw)
    return benign, recovered


class RayTableScorer:
    """Candidate tables scored as Ray tasks; the inputs go to the object store once.

    Args:
        cpus_per_task: CPUs each task holds (and its torch threads), > 0. Default 1.
        gpus_per_task: GPUs each task holds (fractions share one), >= 0. Default 0.
        max_retries: runs again of a task whose worker died, >= 0. Default 3.

    Raises:
        ImportError: Ray is not installed (names ``segshield[ray]``).

    Example:
        >>> scorer = RayTableScorer(cpus_per_task=1)  # doctest: +SKIP
        >>> benign, rec = scorer(model, x, adv, m, tables, regions, "edge", 32)  # doctest: +SKIP
    """

    def __init__(
        self, cpus_per_task: float = 1.0, gpus_per_task: float = 0.0, max_retries: int = 3
    ) -> None:
        check_number("cpus_per_task", cpus_per_task, low=0, low_inclusive=False)
        check_number("gpus_per_task", gpus_per_task, low=0)
        check_number("max_retries", max_retries, low=0, integer=True)
        self.ray = import_ray()
        self.cpus, self.gpus, self.retries = float(cpus_per_task), float(gpus_per_task), max_retries
        self._refs: dict[tuple[int, ...], Any] = {}
        self._task = None

    def slots(self) -> int:
        """Tasks the cluster runs at once with these resources (at least 1)."""
        res = self.ray.cluster_resources()
        n = res.get("CPU", 1.0) / self.cpus
        if self.gpus > 0:
            n = min(n, res.get("GPU", 0.0) / self.gpus)
        return max(1, math.floor(n + 1e-9))

    def _shared(self, *objects: Any) -> list[Any]:
        """Object-store references of ``objects``, put once per distinct object."""
        key = tuple(id(o) for o in objects)
        if key not in self._refs:
            self._refs = {key: [self.ray.put(o) for o in objects]}
        return self._refs[key]

    def __call__(self, model, images, adversarial, masks, tables, regions, pad, batch_size):
        """``(benign (V, B), recovered (V, B))`` Dice, the tables split over the tasks."""
        if self._task is None:
            self._task = self.ray.remote(
                num_cpus=self.cpus,
                num_gpus=self.gpus,
                max_retries=self.retries,
                retry_exceptions=False,
            )(_remote_chunk)
        refs = self._shared(model, images, adversarial, masks)
        groups = math.ceil(tables.shape[0] / GROUP)
        per = GROUP * math.ceil(groups / min(groups, self.slots()))
        threads = max(1, round(self.cpus))
        futures = [
            self._task.remote(*refs, tables[i : i + per].cpu(), regions, pad, batch_size, threads)
            for i in range(0, tables.shape[0], per)
        ]
        parts = self.ray.get(futures)
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _remote_chunk(model, images, adversarial, masks, tables, regions, pad, batch_size, threads):
    """A task: :func:`score_chunk` on the worker's device (the driver's tensors' device)."""
    torch.set_num_threads(threads)
    device = images.device
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("tune: the driver's tensors are on CUDA but this worker has no GPU")
    with torch.no_grad():
        return score_chunk(
            model, images, adversarial, masks, tables.to(device), regions, pad, batch_size
        )
