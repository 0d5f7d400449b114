"""Arguments that several ``segshield`` commands spell the same, declared once.

Each ``add_*`` helper registers one option on a sub-command parser with the common
name, type and help; a command passes its own default (and, where its meaning differs,
its own help). Parsing stays torch-free: choices come from :mod:`segshield.choices`, and
:func:`device_arg` imports torch only when a command checks its ``--device``.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> add_seed(p)
    >>> add_device(p)
    >>> add_output(p)
    >>> p.parse_args(["-o", "out"])
    Namespace(seed=0, device='cpu', output='out')
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from segshield.choices import DEVICE_CHOICES, SPLITS

if TYPE_CHECKING:
    import torch

__all__ = [
    "add_batch_size",
    "add_data",
    "add_device",
    "add_limit",
    "limit_args",
    "limit_flag",
    "add_model",
    "add_output",
    "add_seed",
    "add_size",
    "add_split",
    "check_writable_folder",
    "device_arg",
    "exit_code",
]

Parser = argparse.ArgumentParser


def _note(default: object, shown: object = None) -> str:
    """`` (default X)`` for the help, naming ``shown`` when the parsed default is None."""
    value = shown if default is None else default
    return "" if value is None else f" (default {value})"


def add_device(p: Parser, default: str | None = "cpu", *, shown: str | None = None) -> None:
    """``--device``: a name for :func:`segshield.utils.device.resolve_device`.

    Args:
        p: the sub-command parser.
        default: the parsed default (``None``: the command's settings decide).
        shown: the default named in the help when ``default`` is ``None``.
    """
    names = ", ".join(DEVICE_CHOICES[1:])
    help = f"{names}, cuda:N or {DEVICE_CHOICES[0]}{_note(default, shown)}"
    p.add_argument("--device", default=default, help=help)


def device_arg(name: str, flag: str = "--device") -> torch.device:
    """The ``torch.device`` of a ``--device`` value (imports torch).

    Raises:
        ValueError: not a CPU/CUDA device name, CUDA without a CUDA device, or a CUDA
            index this machine does not have (the message names ``flag``).
    """
    import torch

    from segshield.utils.device import resolve_device

    device = resolve_device(name, arg=flag)
    if device.type == "cuda" and device.index is not None:
        count = torch.cuda.device_count()
        if device.index >= count:
            raise ValueError(
                f"{flag}: {name!r} names CUDA device {device.index}, but this machine has "
                f"{count} (cuda:0..cuda:{count - 1}); use one of those or cuda"
            )
    return device


def check_writable_folder(folder: str | Path, flag: str = "-o") -> Path:
    """Create ``folder`` (with its parents) and check a file can be written in it.

    Called last in a command's ``validate`` so that a bad output place fails before any
    work, not on the first write after it.

    Args:
        folder: the output folder (or the folder of an output file).
        flag: the argument that named it, for the message.

    Returns:
        ``folder`` as a ``Path``.

    Raises:
        ValueError: the folder cannot be created or written to (the message names it,
            the reason and the fix).

    Example:
        >>> import tempfile
        >>> check_writable_folder(tempfile.mkdtemp()).is_dir()
        True
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".segshield-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ValueError(
            f"{flag}: cannot write to {folder} ({reason}); choose a folder you can write to"
        ) from None
    return folder


def add_model(p: Parser, help: str, *, repeat: bool = False) -> None:
    """``--model``: a checkpoint (required) or, with ``repeat``, several (appended)."""
    if repeat:
        p.add_argument("--model", action="append", help=help)
    else:
        p.add_argument("--model", required=True, help=help)


def add_data(
    p: Parser, help: str = "data set KIND[:PATH], e.g. isic:/data/isic", *, repeat: bool = False
) -> None:
    """``--data``: a data spec ``KIND[:PATH]`` (required) or several (appended)."""
    if repeat:
        p.add_argument("--data", action="append", help=help)
    else:
        p.add_argument("--data", required=True, help=help)


def add_seed(
    p: Parser, default: int | None = 0, *, shown: int | None = None, help: str = "seed"
) -> None:
    """``--seed``: a non-negative integer (checked by the command)."""
    p.add_argument("--seed", type=int, default=default, help=help + _note(default, shown))


def add_batch_size(
    p: Parser, default: int | None = 8, *, shown: int | None = None, help: str = "images per batch"
) -> None:
    """``--batch-size``: images per batch (checked by the command)."""
    p.add_argument("--batch-size", type=int, default=default, help=help + _note(default, shown))


def add_limit(p: Parser, help: str = "at most N images", *, first: bool = True) -> None:
    """``--limit N``: a seeded random subset of N items; ``--first N``: the first N.

    The two exclude each other; :func:`limit_args` reads them. ``first=False`` adds
    ``--limit`` alone, with the command's own meaning (``demo``: its first N phantoms).
    """
    if not first:
        p.add_argument("--limit", type=int, default=None, help=help)
        return
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--limit", type=int, default=None, metavar="N", help=help + " (a seeded random subset)"
    )
    group.add_argument(
        "--first", type=int, default=None, metavar="N", help="the first N images in file order"
    )


def limit_args(args: argparse.Namespace) -> tuple[int | None, str | None]:
    """``(N, "random")`` for ``--limit N``, ``(N, "first")`` for ``--first N``, else
    ``(None, None)``.

    Example:
        >>> limit_args(argparse.Namespace(limit=None, first=5))
        (5, 'first')
    """
    if getattr(args, "first", None) is not None:
        return args.first, "first"
    if args.limit is not None:
        return args.limit, "random"
    return None, None


def limit_flag(args: argparse.Namespace) -> str:
    """The name of the flag that set the subset, for messages (``--first`` or ``--limit``)."""
    return "--first" if getattr(args, "first", None) is not None else "--limit"


def add_size(p: Parser, help: str = "image side (default: the model's input size)") -> None:
    """``--size``: the image side the loader resizes to (default: native or the model's)."""
    p.add_argument("--size", type=int, default=None, help=help)


def add_split(p: Parser, default: str | None = "val", *, shown: str | None = None) -> None:
    """``--split``: one of :data:`segshield.choices.SPLITS` (checked by the command)."""
    p.add_argument("--split", default=default, help=", ".join(SPLITS) + _note(default, shown))


def add_output(
    p: Parser,
    help: str = "output folder",
    *,
    required: bool = True,
    default: str | None = None,
    metavar: str | None = None,
) -> None:
    """``-o/--output``: where the command writes."""
    p.add_argument("-o", "--output", required=required, default=default, metavar=metavar, help=help)


def exit_code(log: logging.Logger, failed: list[str], what: str, sep: str = ", ") -> int:
    """The exit status of a command that processes items: 0, or 1 when any item failed.

    Failures are logged as one error: ``"N {what} failed: a{sep}b"``.
    """
    if failed:
        log.error("%d %s failed: %s", len(failed), what, sep.join(failed))
        return 1
    return 0
