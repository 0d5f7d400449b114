"""The exceptions that name a user's mistake rather than a bug (torch-free).

The library raises the built-in ``ValueError``, ``TypeError`` and ``OSError`` family
for bad input, with a message naming the argument or file and the fix. Two subclasses
say more, so that the command line can map them to its exit codes: a
:class:`UsageError` is fixed by changing the command's arguments (exit 2, even when it
is found after the work started), and a :class:`FolderBusyError` says that another
process is writing the same results folder (exit 2, naming that process). Both are
``ValueError`` subclasses, so callers that catch ``ValueError`` keep working.

Example:
    >>> from segshield.errors import UsageError
    >>> try:
    ...     raise UsageError("--model: unet:widht=4: unknown setting widht")
    ... except ValueError as exc:
    ...     print(exc)
    --model: unet:widht=4: unknown setting widht
"""

from __future__ import annotations

__all__ = ["UsageError", "FolderBusyError"]


class UsageError(ValueError):
    """A bad argument or an input named by one; the message names it and the fix.

    Example:
        >>> isinstance(UsageError("--size: expected >= 8"), ValueError)
        True
    """


class FolderBusyError(UsageError):
    """An output folder is locked by another live process (pid, host, start time named).

    Example:
        >>> str(FolderBusyError("results: out is in use by process 12 on host h"))
        'results: out is in use by process 12 on host h'
    """
