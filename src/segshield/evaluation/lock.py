"""One writer per output folder: an exclusive ``flock`` on ``FOLDER/.segshield.lock``.

The lock is held by an open file, so the kernel releases it when the process ends, killed
or not: a lock left by a dead process never blocks. The file stays in the folder (removing
it would let two processes lock two different files) and holds the holder's process id,
host, start time and command, which a second process names when it is refused. Taking a
folder's lock again in the process that holds it nests (released by the last
:meth:`FolderLock.release`). ``flock`` is advisory and local: it does not guard a folder
shared over NFS between machines. Where ``fcntl`` is missing (Windows) no lock is taken,
with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import IO

from segshield.errors import FolderBusyError

__all__ = ["LOCK_NAME", "FolderLock", "lock_folder"]

log = logging.getLogger(__name__)

LOCK_NAME = ".segshield.lock"
#: resolved folder -> [open lock file, nesting count], for the locks this process holds
_HELD: dict[str, list] = {}


class FolderLock:
    """The lock of one folder, held until :meth:`release` (or the end of the process).

    Args:
        folder: the locked folder.
        key: its resolved path (the key of the process's held locks).
    """

    def __init__(self, folder: Path, key: str) -> None:
        self.folder = folder
        self._key = key
        self._released = False

    def release(self) -> None:
        """Release this hold; the lock goes when the last hold of the process is released."""
        if self._released:
            return
        self._released = True
        held = _HELD.get(self._key)
        if held is None:
            return
        held[1] -= 1
        if held[1] == 0:
            del _HELD[self._key]
            held[0].close()  # closing the file releases the flock

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_folder(folder: str | Path, flag: str = "-o") -> FolderLock:
    """Take the exclusive lock of ``folder`` (created when missing), without waiting.

    Args:
        folder: the output folder.
        flag: the argument that named the folder, for the message.

    Returns:
        The held :class:`FolderLock`.

    Raises:
        FolderBusyError: another process holds the lock (named by pid, host, start time).
        OSError: the folder cannot be created or the lock file not written.

    Example:
        >>> import tempfile
        >>> with lock_folder(tempfile.mkdtemp()) as lock:
        ...     lock.folder.joinpath(LOCK_NAME).is_file()
        True
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = str(folder.resolve())
    if key in _HELD:
        _HELD[key][1] += 1
        return FolderLock(folder, key)
    try:
        import fcntl
    except ImportError:
        log.warning("%s: no folder lock on this platform; run one writer at a time", folder)
        return FolderLock(folder, key)
    fh: IO[str] = open(folder / LOCK_NAME, "a+", encoding="utf-8")  # noqa: SIM115
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fh)
        fh.close()
        raise FolderBusyError(
            f"{flag}: {folder} is in use by {_describe(holder)}; wait for it to finish, or "
            "use another folder"
        ) from None
    fh.seek(0)
    fh.truncate()
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": " ".join(sys.argv),
    }
    fh.write(json.dumps(info) + "\n")
    fh.flush()
    _HELD[key] = [fh, 1]
    return FolderLock(folder, key)


def _read_holder(fh: IO[str], tries: int = 40, wait_s: float = 0.05) -> str:
    """The holder's details; it writes them just after it takes the lock, so a reader that
    comes in between waits for them a moment (at most ``tries * wait_s`` seconds)."""
    for _ in range(tries):
        fh.seek(0)
        text = fh.read()
        if text.endswith("\n"):
            return text
        time.sleep(wait_s)
    return text


def _describe(text: str) -> str:
    """``process PID on host HOST since TIME (COMMAND)`` from a lock file's content."""
    try:
        info = json.loads(text)
    except json.JSONDecodeError:
        info = None
    if not isinstance(info, dict) or "pid" not in info:
        return "another process (it has not written its details yet)"
    command = f" ({info['command']})" if info.get("command") else ""
    return (
        f"process {info['pid']} on host {info.get('host', '?')} since "
        f"{info.get('started', '?')}{command}"
    )
