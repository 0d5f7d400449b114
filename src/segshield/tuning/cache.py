"""JSON-lines cache of evaluated FR tables, so a table search can resume after a stop.

The first line is a header with a fingerprint of what the evaluations depend on (model
weights, validation images, masks, adversarial images, settings). Every evaluation is
appended as one line, flushed and fsynced, so a crash loses at most the line being
written; a truncated last line is dropped (with a warning) when the cache is reopened.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from segshield.utils.imageio import atomic_write_bytes

__all__ = ["EvalCache", "fingerprint", "cached_tensor"]

log = logging.getLogger(__name__)

_FORMAT = "segshield-tune-cache/1"


def fingerprint(*items: Any) -> str:
    """SHA-256 over tensors (bytes, shape, dtype), modules (state dicts) and JSON values.

    Example:
        >>> fingerprint(torch.zeros(2), {"a": 1}) == fingerprint(torch.zeros(2), {"a": 1})
        True
    """
    h = hashlib.sha256()

    def feed(x: Any) -> None:
        if isinstance(x, torch.nn.Module):
            for name, t in sorted(x.state_dict().items()):
                h.update(name.encode())
                feed(t)
        elif isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            if t.dtype == torch.bfloat16:
                t = t.float()
            h.update(t.numpy().tobytes())
        else:
            h.update(json.dumps(x, sort_keys=True, default=str).encode())

    for item in items:
        feed(item)
    return h.hexdigest()


class EvalCache:
    """Evaluations keyed by ``(objective, candidate key)``, persisted as JSON lines.

    Args:
        path: cache file, or None for an in-memory cache.
        fingerprint: identity of the inputs the evaluations depend on.
        resume: reuse an existing file with the same fingerprint (True) or start a new
            one, replacing the file (False). Default True.

    Raises:
        ValueError: ``resume`` and the file was written for other inputs (its fingerprint
            differs), or the file is not a segshield tuning cache.

    Example:
        >>> c = EvalCache(None, "abc")
        >>> c.put("static", "k", {"benign_loss": 0.0}); c.get("static", "k")
        {'benign_loss': 0.0}
    """

    def __init__(self, path: str | Path | None, fingerprint: str, *, resume: bool = True):
        self.path = None if path is None else Path(path)
        self.fingerprint = fingerprint
        self._data: dict[tuple[str, str], dict[str, Any]] = {}
        if self.path is None:
            return
        if resume and self.path.exists():
            self._load()
        else:
            header = {"type": "header", "format": _FORMAT, "fingerprint": fingerprint}
            atomic_write_bytes(self.path, (json.dumps(header) + "\n").encode())

    def _load(self) -> None:
        assert self.path is not None
        lines = self.path.read_text(encoding="utf-8").splitlines()
        try:
            header = json.loads(lines[0]) if lines else {}
        except json.JSONDecodeError:
            header = {}
        if header.get("format") != _FORMAT:
            raise ValueError(
                f"{self.path}: expected a segshield tuning cache (header format {_FORMAT!r}), "
                "got another file; choose another cache path"
            )
        if header.get("fingerprint") != self.fingerprint:
            raise ValueError(
                f"{self.path}: this cache was written for another model, data, attack or "
                "settings (fingerprint differs); delete it or run without resume"
            )
        good = [lines[0]]
        for i, line in enumerate(lines[1:], start=2):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                if i == len(lines):
                    log.warning("%s: dropping a truncated last line (interrupted write)", self.path)
                    atomic_write_bytes(self.path, ("\n".join(good) + "\n").encode())
                    break
                raise ValueError(f"{self.path}: line {i} is not valid JSON") from None
            self._data[(rec["objective"], rec["key"])] = rec["value"]
            good.append(line)

    def __len__(self) -> int:
        return len(self._data)

    def get(self, objective: str, key: str) -> dict[str, Any] | None:
        """The stored value, or None when not evaluated yet."""
        return self._data.get((objective, key))

    def put(self, objective: str, key: str, value: dict[str, Any]) -> None:
        """Store ``value`` and append it to the file (flushed and fsynced)."""
        self._data[(objective, key)] = value
        if self.path is None:
            return
        line = json.dumps({"type": "eval", "objective": objective, "key": key, "value": value})
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def cached_tensor(
    path: str | Path | None, fingerprint: str, compute, *, resume: bool = True
) -> torch.Tensor:
    """``compute()`` once, kept in a safetensors file tagged with ``fingerprint``.

    Used for the adversarial images of a table search, the costliest step of a rerun.
    A file with another fingerprint is recomputed and replaced (it belongs to other
    inputs); the write is atomic.

    Args:
        path: ``.safetensors`` file, or None to always compute.
        fingerprint: identity of the inputs (see :func:`fingerprint`).
        compute: zero-argument callable returning a tensor.
        resume: reuse a matching file. Default True.

    Returns:
        The tensor (loaded on the CPU when it came from the file).
    """
    from safetensors import safe_open
    from safetensors.torch import save

    if path is not None and resume and Path(path).is_file():
        with safe_open(str(path), framework="pt") as fh:
            if (fh.metadata() or {}).get("fingerprint") == fingerprint:
                log.info("%s: reusing cached adversarial images", path)
                return fh.get_tensor("tensor")
        log.info("%s: written for other inputs; recomputing", path)
    value = compute()
    if path is not None:
        data = save({"tensor": value.detach().cpu().contiguous()}, {"fingerprint": fingerprint})
        atomic_write_bytes(path, data)
    return value
