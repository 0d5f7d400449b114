"""One place that turns a device name into a ``torch.device`` (library and CLI)."""

from __future__ import annotations

import torch

from segshield.choices import DEVICE_CHOICES

__all__ = ["DEVICE_CHOICES", "resolve_device"]


def resolve_device(device: str | torch.device, arg: str = "device") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` as given.

    Args:
        device: a name or a ``torch.device`` (returned unchanged).
        arg: the argument's name, used in error messages (e.g. ``"--device"``).

    Returns:
        The ``torch.device``.

    Raises:
        ValueError: not a CPU or CUDA device name, or CUDA asked for without a CUDA device.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ValueError(f"{arg}: expected auto, cpu, cuda or cuda:N, got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"{arg}: {device!r} was asked for but no CUDA device is available; use cpu"
        )
    return dev
