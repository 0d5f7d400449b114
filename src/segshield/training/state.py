"""Training state files: ``X.state.safetensors`` + ``X.state.json``, never pickled.

The state after the last finished epoch: model weights and optimiser moments
(safetensors), and the epoch, history, best score and settings (JSON). A run resumed
from it continues at the next epoch (:func:`segshield.training.loop.fit`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from segshield.models.checkpoint import read_json, read_safetensors, stem_paths, weights_mismatch
from segshield.utils.imageio import atomic_write_bytes

__all__ = ["state_paths", "save_state", "load_state", "check_state", "STATE_FORMAT"]

STATE_FORMAT = "segshield-train-state"
_KEYS = ("epoch", "param_groups", "history", "best_score", "architecture")


def state_paths(out: str | Path) -> tuple[Path, Path]:
    """``(X.state.safetensors, X.state.json)`` for the output stem ``X``.

    Example:
        >>> [p.name for p in state_paths("runs/m.json")]
        ['m.state.safetensors', 'm.state.json']
    """
    return stem_paths(out, ".state.safetensors", ".state.json")


def save_state(
    out: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, meta: dict[str, Any]
) -> None:
    """Write the model weights, optimiser state and ``meta`` next to ``out``, atomically.

    Args:
        out: the run's output stem ``X``.
        model: the model being trained.
        opt: its optimiser.
        meta: JSON-ready run information (epoch, history, best score, settings, ...).
    """
    from safetensors.torch import save as st_save

    tensors: dict[str, torch.Tensor] = {
        f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()
    }
    osd = opt.state_dict()
    for idx, st in osd["state"].items():
        for k, v in st.items():
            tensors[f"optim.{idx}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous().clone()
    meta = dict(meta, format=STATE_FORMAT, param_groups=osd["param_groups"])
    wpath, jpath = state_paths(out)
    atomic_write_bytes(wpath, st_save(tensors, metadata={"format": STATE_FORMAT}))
    atomic_write_bytes(jpath, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())


def check_state(resume: str | Path) -> dict[str, Any]:
    """Check a training state before any work: its JSON, and that its weights file is whole.

    Reads the JSON and the header of the safetensors file (a truncated or damaged file
    fails here), not the tensors.

    Args:
        resume: the ``-o`` stem of the run that wrote the state.

    Returns:
        The state's JSON (epoch, history, settings, ...).

    Raises:
        FileNotFoundError: a state file is missing.
        ValueError: not a segshield training state, a missing key, or a damaged file
            (the message names the file).

    Example:
        >>> import tempfile, os
        >>> check_state(os.path.join(tempfile.mkdtemp(), "none"))
        Traceback (most recent call last):
        ...
        FileNotFoundError: ...none.state.safetensors: training state not found; ...
    """
    from safetensors import SafetensorError, safe_open

    wpath, jpath = state_paths(resume)
    for p in (wpath, jpath):
        if not p.is_file():
            raise FileNotFoundError(
                f"{p}: training state not found; resume takes the -o stem of an earlier "
                "segshield train run (which writes X.state.safetensors + X.state.json)"
            )
    meta = read_json(jpath)
    if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT:
        raise ValueError(f"{jpath}: not a segshield training state (format {STATE_FORMAT!r})")
    for key in _KEYS:
        if key not in meta:
            raise ValueError(f"{jpath}: missing key {key!r}")
    try:
        with safe_open(str(wpath), "pt") as fh:
            fh.keys()
    except SafetensorError as exc:
        raise ValueError(
            f"{wpath}: damaged training state ({exc}); resume from an intact copy or "
            "train again without --resume"
        ) from exc
    return meta


def load_state(resume: Path, model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore the weights and optimiser state saved by :func:`save_state`; return its meta.

    Raises:
        FileNotFoundError: a state file is missing.
        ValueError: not a segshield training state, a missing key, or a state for another
            architecture or of other weights.
    """
    wpath, jpath = state_paths(resume)
    meta = check_state(resume)
    arch = getattr(model, "config", {}).get("architecture")
    if meta["architecture"] != arch:
        raise ValueError(
            f"{jpath}: state is for architecture {meta['architecture']!r}, the model is "
            f"{arch!r}; resume with the same --model"
        )
    tensors = read_safetensors(wpath)
    model_sd = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    problem = weights_mismatch(model.state_dict(), model_sd)
    if problem:
        raise ValueError(
            f"{wpath}: weights do not match the model ({problem}); resume with the same "
            "--model settings as the run that wrote it"
        )
    model.load_state_dict(model_sd, strict=True)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return meta
