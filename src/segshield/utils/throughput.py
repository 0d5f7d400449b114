"""Image-iterations per second of a model on this machine (sizing a run before it starts).

One image-iteration is one forward and one backward pass of one image, the unit of an
attack's cost; :func:`measure_throughput` times a few of them on random images.
"""

from __future__ import annotations

import time

import torch

from segshield._checks import check_number

__all__ = ["measure_throughput"]


def measure_throughput(
    model: torch.nn.Module,
    shape: tuple[int, ...],
    device: torch.device | str = "cpu",
    *,
    batch_size: int = 8,
    seconds: float = 2.0,
) -> float:
    """Image-iterations per second of ``model`` (forward + backward) on random images.

    Args:
        model: the model (not changed; its parameters' gradients are left off).
        shape: one image's ``(C, H, W)``.
        device: where to run. Default CPU.
        batch_size: images per pass, >= 1. Default 8.
        seconds: time spent measuring after three warm-up passes, > 0. Default 2.

    Returns:
        Image-iterations per second.

    Example:
        >>> net = torch.nn.Conv2d(3, 1, 3, padding=1)
        >>> measure_throughput(net, (3, 16, 16), seconds=0.05) > 0
        True
    """
    check_number("batch_size", batch_size, low=1, integer=True)
    check_number("seconds", seconds, low=0, low_inclusive=False)
    device = torch.device(device)
    model = model.to(device).eval()
    x = torch.rand(batch_size, *shape, device=device, requires_grad=True)

    def step() -> None:
        x.grad = None
        model(x).float().sum().backward()

    for _ in range(3):  # warm-up: the first passes pick kernels and allocate
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    done, t0 = 0, time.perf_counter()
    while done == 0 or time.perf_counter() - t0 < seconds:
        step()
        done += batch_size
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return done / (time.perf_counter() - t0)
