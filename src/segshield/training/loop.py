"""The one training loop: epochs, batches, optimiser steps, logging, best checkpoint, resume.

Every task trains through :func:`fit`; what differs between tasks is a small
:class:`TrainSteps` object: the batches of an epoch, the loss of a batch, the
validation scores and the configuration kept with the best checkpoint
(:mod:`segshield.training.segmentation`: Dice + CE and region scores;
:mod:`segshield.training.classify`: class-weighted cross-entropy and accuracy).

Files written (each atomically) for an output stem ``X``:

- ``X.safetensors`` + ``X.json``: the best model so far by the validation score (a
  normal checkpoint for :func:`segshield.models.load`), written when it improves;
- with ``keep_state``: ``X.state.safetensors`` + ``X.state.json``, the training state
  after the last finished epoch (:mod:`segshield.training.state`).

Resuming (``resume=X``) restores that state and continues at the next epoch.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import torch

from segshield._checks import values_checked
from segshield._deprecation import moved_names
from segshield.choices import PRECISIONS
from segshield.models.checkpoint import checkpoint_paths, save
from segshield.training.state import load_state, save_state, state_paths
from segshield.utils.device import resolve_device as _resolve_device
from segshield.utils.imageio import atomic_write_bytes
from segshield.utils.progress import progress

__all__ = ["fit", "TrainSteps", "PRECISIONS"]

log = logging.getLogger(__name__)


def _segmentation(name: str) -> tuple[str, Any]:
    module = "segshield.training.segmentation"
    return f"{module}.{name}", lambda: getattr(importlib.import_module(module), name)


__getattr__ = moved_names(
    __name__,
    {
        "resolve_device": ("segshield.utils.device.resolve_device", lambda: _resolve_device),
        "state_paths": ("segshield.training.state.state_paths", lambda: state_paths),
        "train_segmentation": _segmentation("train_segmentation"),
        "evaluate_segmentation": _segmentation("evaluate_segmentation"),
    },
)


class TrainSteps(Protocol):
    """The task-specific parts of a training run, driven by :func:`fit`.

    ``score`` names the validation entry to maximise; ``batches(epoch)`` returns the
    epoch's batches (sized, drawn from the epoch's randomness); ``loss(model, batch)``
    returns the batch loss and its weight in the epoch's mean loss; ``lr(epoch, step)``
    is the learning rate of a step, or None for the optimiser's own;
    ``validate(model)`` returns the validation scores; ``best_config(epoch, scores)``
    returns the entries stored in ``model.config`` with the best checkpoint.
    """

    score: str

    def batches(self, epoch: int) -> Iterable[Any]: ...

    def loss(self, model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, int]: ...

    def lr(self, epoch: int, step: int) -> float | None: ...

    def validate(self, model: torch.nn.Module) -> dict[str, Any]: ...

    def best_config(self, epoch: int, scores: dict[str, Any]) -> dict[str, Any]: ...


def _train_epoch(
    model: torch.nn.Module,
    steps: TrainSteps,
    opt: torch.optim.Optimizer,
    epoch: int,
    epochs: int,
    device: torch.device,
) -> float:
    """One pass over the epoch's batches; returns the weighted mean loss."""
    model.train()
    running = torch.zeros((), device=device)
    count = 0
    batches = steps.batches(epoch)
    for step, batch in enumerate(progress(batches, desc=f"epoch {epoch}/{epochs}", unit="batch")):
        lr = steps.lr(epoch, step)
        if lr is not None:
            for group in opt.param_groups:
                group["lr"] = lr
        # the first batch's values are checked; later steps skip the check (no host sync)
        with values_checked() if step else contextlib.nullcontext():
            loss, weight = steps.loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running += loss.detach() * weight
        count += weight
    return float(running) / max(count, 1)


def _resume(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    resume: Path,
    out: Path,
    epochs: int,
) -> dict[str, Any]:
    """Restore the state saved under ``resume``; copy its best checkpoint to ``out``."""
    meta = load_state(resume, model, opt)
    start = int(meta["epoch"]) + 1
    log.info("resuming from %s at epoch %d of %d", resume, start, epochs)
    src, dst = checkpoint_paths(resume), checkpoint_paths(out)
    if src != dst and all(p.is_file() for p in src):
        # keep the best-so-far checkpoint with the new output too
        for a, b in zip(src, dst, strict=True):
            atomic_write_bytes(b, a.read_bytes())
    if start > epochs:
        log.warning("the saved state already ran %d epochs (>= %d)", start - 1, epochs)
    return {
        "start": start,
        "history": list(meta["history"]),
        "best_score": float(meta["best_score"]),
        "best_epoch": int(meta.get("best_epoch", 0)),
        "best_scores": dict(meta.get("best_scores", {})),
    }


def fit(
    model: torch.nn.Module,
    steps: TrainSteps,
    opt: torch.optim.Optimizer,
    *,
    epochs: int,
    out: Path,
    device: torch.device,
    settings: dict[str, Any],
    resume: Path | None = None,
    keep_state: bool = True,
) -> dict[str, Any]:
    """Train ``model`` for ``epochs`` epochs, keeping the best checkpoint at ``out``.

    After every epoch the model is validated; an epoch whose score
    (``scores[steps.score]``) beats every earlier one (the first always does; ties keep
    the earlier) updates ``model.config`` with ``steps.best_config`` and is saved with
    :func:`segshield.models.save`.

    Args:
        model: a registry model already on ``device`` (segmentation or classifier).
        steps: the task's parts (:class:`TrainSteps`).
        opt: optimiser over the model's parameters.
        epochs: last epoch to run, >= 1 (checked by the caller).
        out: output stem ``X``.
        device: where the model is.
        settings: training settings stored in the state file.
        resume: stem of an earlier run's state to continue from, or None.
        keep_state: write the training state after every epoch. Default True.

    Returns:
        ``{"best_epoch", "best_score", "best_scores", "epochs_run", "history",
        "checkpoint", "seconds"}``; ``history`` lists ``{"epoch", "loss", "lr", "val"}``
        per epoch. The model keeps the weights of the last epoch.

    Raises:
        ValueError, FileNotFoundError: a resume state that is missing or does not match.

    Example:
        >>> from segshield.training.classify import fit_classifier  # drives fit
    """
    run = {"start": 1, "history": [], "best_score": -math.inf, "best_epoch": 0, "best_scores": {}}
    if resume is not None:
        run = _resume(model, opt, resume, out, epochs)
    history = run["history"]
    t0 = time.perf_counter()
    for epoch in range(run["start"], epochs + 1):
        mean_loss = _train_epoch(model, steps, opt, epoch, epochs, device)
        val = steps.validate(model)
        history.append(
            {"epoch": epoch, "loss": mean_loss, "lr": opt.param_groups[0]["lr"], "val": val}
        )
        score = val[steps.score]
        improved = score > run["best_score"] or run["best_epoch"] == 0
        log.info(
            "epoch %d/%d loss %.4f val %s%s (%.0f s)",
            epoch,
            epochs,
            mean_loss,
            ", ".join(f"{k} {v:.4f}" for k, v in val.items() if isinstance(v, float)),
            " *best*" if improved else "",
            time.perf_counter() - t0,
        )
        if improved:
            run.update(best_score=score, best_epoch=epoch, best_scores=val)
            model.config.update(steps.best_config(epoch, val))
            save(model, out)
        if keep_state:
            meta = {k: run[k] for k in ("best_score", "best_epoch", "best_scores")}
            meta.update(epoch=epoch, history=history, settings=settings)
            save_state(out, model, opt, {**meta, "architecture": model.config.get("architecture")})
    return {
        "best_epoch": run["best_epoch"],
        "best_score": run["best_score"],
        "best_scores": run["best_scores"],
        "epochs_run": max(0, epochs - run["start"] + 1),
        "history": history,
        "checkpoint": str(out),
        "seconds": time.perf_counter() - t0,
    }
