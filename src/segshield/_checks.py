"""One place for input checks, so every error says what was expected, what came, and the fix.

All public entry points call these helpers on entry (kornia-style shape checks).
:func:`check_images` also checks the values (finite, in ``[0, 1]``) with one fused
reduction and one host sync per call. Loops that call checked functions once per step
(attacks, training) check their inputs once on entry and run the steps inside
:func:`values_checked` (or are decorated with :func:`checked_entry`), where the value
check is skipped, so a step never waits for the device. A tensor checked a moment ago
(the same memory, unchanged) is not checked again, so nested entry points cost one sync.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import torch

__all__ = [
    "check_images",
    "values_checked",
    "checked_entry",
    "check_masks",
    "check_logits",
    "check_choice",
    "check_number",
    "check_same_batch",
]


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    return f"{type(x).__name__}"


#: values up to this far outside [0, 1] are float rounding (e.g. a blur's 1.0000001)
RANGE_TOLERANCE = 1e-3

_state = threading.local()  # .trusted: depth of values_checked(); .last: the last checked tensor


@contextlib.contextmanager
def values_checked() -> Iterator[None]:
    """Skip the value check of :func:`check_images` inside (shapes are still checked).

    For loops whose inputs were checked on entry: the per-step calls of the model and the
    defences then cost no host sync, and may see values briefly outside ``[0, 1]`` (ASMA
    scores an unclamped step). Thread-local; nests.

    Example:
        >>> with values_checked():
        ...     check_images(torch.full((1, 1, 2, 2), 255.0)).shape
        torch.Size([1, 1, 2, 2])
    """
    depth = getattr(_state, "trusted", 0)
    _state.trusted = depth + 1
    try:
        yield
    finally:
        _state.trusted = depth


_F = TypeVar("_F", bound=Callable[..., Any])


def checked_entry(*names: str) -> Callable[[_F], _F]:
    """Decorator: check image arguments ``names`` on entry, run the body in :func:`values_checked`.

    Args:
        names: parameters of the decorated function that hold ``(B, C, H, W)`` images.

    Example:
        >>> @checked_entry("images")
        ... def double(images):
        ...     return images * 2
        >>> double(torch.ones(1, 1, 2, 2)).sum().item()
        8.0
    """

    def wrap(fn: _F) -> _F:
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            bound = sig.bind_partial(*args, **kwargs)
            for name in names:
                if name in bound.arguments:
                    check_images(bound.arguments[name], name)
            with values_checked():
                return fn(*args, **kwargs)

        return run  # type: ignore[return-value]

    return wrap


def _tracing() -> bool:
    """True while TorchScript, ``torch.compile`` or ``torch.export`` traces the call."""
    return bool(torch.jit.is_tracing() or torch.compiler.is_compiling())


def _skip_values(x: torch.Tensor) -> bool:
    """True where the value check must not run: trusted loops, tracing, meta tensors."""
    return bool(getattr(_state, "trusted", 0) or x.device.type == "meta" or _tracing())


def _key(x: torch.Tensor) -> tuple | None:
    """What identifies ``x``'s values while the last checked tensor is alive."""
    if x.is_inference():
        return None  # inference tensors have no version counter
    return (x.data_ptr(), x.shape, x.stride(), x.dtype, x.device, x._version)


def _seen(x: torch.Tensor) -> bool:
    last = getattr(_state, "last", None)
    if last is None or last[0]() is None:
        return False
    key = _key(x)
    return key is not None and key == last[1]


def _remember(x: torch.Tensor) -> None:
    key = _key(x)
    _state.last = None if key is None else (weakref.ref(x), key)


def _check_values(x: torch.Tensor, name: str) -> None:
    """Finite and in ``[0, 1]``: one ``aminmax`` (NaN propagates), one host sync."""
    lo, hi = torch.stack(torch.aminmax(x.detach())).double().tolist()
    if not (math.isfinite(lo) and math.isfinite(hi)):
        xd = x.detach()
        n_nan, n_inf = int(torch.isnan(xd).sum()), int(torch.isinf(xd).sum())
        raise ValueError(
            f"{name}: expected finite values, got {n_nan + n_inf} non-finite of "
            f"{x.numel()} ({n_nan} NaN, {n_inf} inf); fix where they come from, or "
            "replace them with torch.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0)"
        )
    if lo < -RANGE_TOLERANCE or hi > 1.0 + RANGE_TOLERANCE:
        if lo >= 0.0 and hi <= 255.0:
            fix = "for 0..255 images use x / 255"
        elif lo >= 0.0 and hi <= 65535.0:
            fix = "for 16-bit (0..65535) images use x / 65535"
        elif lo < 0.0:
            fix = (
                "segshield images are not normalised: undo the normalisation "
                "(x * std + mean) and let the model wrapper normalise"
            )
        else:
            fix = "scale the images to [0, 1] (e.g. x / x.max())"
        raise ValueError(
            f"{name}: expected values in [0, 1], got min {lo:.4g} and max {hi:.4g}; {fix}"
        )


def check_images(x: Any, name: str = "images", *, check_range: bool = True) -> torch.Tensor:
    """Check a batch of images in docs/ALGORITHMS.md §1 layout.

    Shape and dtype always; the values (finite, within ``[0, 1]`` up to
    :data:`RANGE_TOLERANCE`) with ``check_range``, except inside :func:`values_checked`,
    while tracing or compiling, for meta tensors, and for a tensor whose unchanged
    values were the last ones checked (so nested entry points sync once).

    Args:
        x: candidate tensor.
        name: argument name used in the error message.
        check_range: check the values too (one fused reduction and one host sync).
            ``False`` for tensors that are images in layout only (padding of normalised
            or 0..255-scaled images). Default True.

    Returns:
        ``x`` unchanged.

    Raises:
        TypeError: ``x`` is not a floating-point tensor.
        ValueError: ``x`` is not 4-D ``(B, C, H, W)``, is empty, looks channels-last
            (last dimension 1, 3 or 4 with more than 4 in dimension 1), or (with
            ``check_range``) holds NaN/inf (the count is given) or values outside
            ``[0, 1]`` (the range is given, with the fix).

    Example:
        >>> check_images(torch.rand(2, 3, 8, 8)).shape
        torch.Size([2, 3, 8, 8])
        >>> try:
        ...     check_images(torch.full((1, 3, 2, 2), 200.0))
        ... except ValueError as exc:
        ...     print(str(exc).split("; ")[1])
        for 0..255 images use x / 255
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{name}: expected a float tensor of shape (B, C, H, W) with values in [0, 1], "
            f"got {_describe(x)}; convert with torch.as_tensor(...).float() / 255"
        )
    if not x.is_floating_point():
        raise TypeError(
            f"{name}: expected a floating-point tensor with values in [0, 1], got dtype "
            f"{x.dtype}; for uint8 images use x.float() / 255"
        )
    if x.ndim != 4:
        hint = "add a batch axis with x.unsqueeze(0)" if x.ndim == 3 else "reshape to (B, C, H, W)"
        raise ValueError(f"{name}: expected shape (B, C, H, W), got {tuple(x.shape)}; {hint}")
    if x.numel() == 0:
        raise ValueError(f"{name}: expected a non-empty batch, got shape {tuple(x.shape)}")
    # Shape guards on symbolic sizes would pin an exported graph's width: not while tracing.
    if not _tracing() and x.shape[-1] in (1, 3, 4) and x.shape[1] > 4:
        raise ValueError(
            f"{name}: expected channels first (B, C, H, W), got {tuple(x.shape)}, which looks "
            "channels-last (B, H, W, C); use x.permute(0, 3, 1, 2)"
        )
    if check_range and not _skip_values(x) and not _seen(x):
        _check_values(x, name)
        _remember(x)
    return x


def check_masks(m: Any, name: str = "masks", *, like: torch.Tensor | None = None) -> torch.Tensor:
    """Check a batch of integer masks ``(B, H, W)``.

    Args:
        m: candidate tensor of class ids (255 = ignore).
        name: argument name used in the error message.
        like: optional image or logit batch ``(B, *, H, W)`` whose batch and spatial
            sizes the masks must match.

    Returns:
        ``m`` unchanged.

    Raises:
        TypeError: ``m`` is not an integer or boolean tensor.
        ValueError: wrong number of dimensions or sizes that do not match ``like``.
    """
    if not isinstance(m, torch.Tensor):
        raise TypeError(f"{name}: expected an integer tensor (B, H, W), got {_describe(m)}")
    if m.is_floating_point() or m.is_complex():
        raise TypeError(
            f"{name}: expected integer class ids, got dtype {m.dtype}; use m.round().long()"
        )
    if m.ndim != 3:
        hint = "add a batch axis with m.unsqueeze(0)" if m.ndim == 2 else "squeeze the channel axis"
        raise ValueError(f"{name}: expected shape (B, H, W), got {tuple(m.shape)}; {hint}")
    if like is not None:
        want = (like.shape[0], like.shape[-2], like.shape[-1])
        if tuple(m.shape) != want:
            raise ValueError(
                f"{name}: expected shape {want} to match the images, got {tuple(m.shape)}; "
                "resize masks with nearest-neighbour interpolation to the image size"
            )
    return m


def check_logits(z: Any, name: str = "logits") -> torch.Tensor:
    """Check model output logits ``(B, K, H, W)``.

    Raises:
        TypeError: not a float tensor.
        ValueError: not 4-D.
    """
    if not isinstance(z, torch.Tensor) or not z.is_floating_point():
        raise TypeError(f"{name}: expected float logits (B, K, H, W), got {_describe(z)}")
    if z.ndim != 4:
        raise ValueError(
            f"{name}: expected shape (B, K, H, W), got {tuple(z.shape)}; a model must return "
            "one logit map per class (K=1 for a sigmoid model)"
        )
    return z


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Check that ``value`` is one of ``choices``.

    Raises:
        ValueError: naming the argument, the value and the valid choices.
    """
    choices = list(choices)
    if value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name}: expected one of {valid}, got {value!r}")
    return value


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    integer: bool = False,
) -> Any:
    """Check a numeric setting lies in a range.

    Raises:
        TypeError: not a number (or not an integer when ``integer``).
        ValueError: outside the range, with the range in the message.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "an integer" if integer else "a number"
        raise TypeError(f"{name}: expected {kind}, got {value!r}")
    if integer and not float(value).is_integer():
        raise TypeError(f"{name}: expected an integer, got {value!r}")
    if value != value:  # NaN
        raise ValueError(f"{name}: expected a number, got NaN")
    bad_low = low is not None and (value < low if low_inclusive else value <= low)
    bad_high = high is not None and (value > high if high_inclusive else value >= high)
    if bad_low or bad_high:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        lb = "[" if low_inclusive else "("
        hb = "]" if high_inclusive else ")"
        raise ValueError(f"{name}: expected a value in {lb}{lo}, {hi}{hb}, got {value!r}")
    return value


def check_same_batch(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str]) -> None:
    """Check two tensors have the same batch size.

    Raises:
        ValueError: naming both arguments and their batch sizes.
    """
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{names[1]}: expected batch size {a.shape[0]} to match {names[0]}, got {b.shape[0]}"
        )
