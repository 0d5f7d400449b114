"""Errors of the data loaders: one message naming the folder or file, what was expected, the fix.

:class:`DatasetError` is a ``ValueError`` (a data set that cannot be used as given);
:class:`MissingFolderError` is also a ``FileNotFoundError`` (the folder, or a sub-folder
the layout needs, is absent), so code that catches either keeps working.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DatasetError", "MissingFolderError", "describe_folder"]


class DatasetError(ValueError):
    """A data set that cannot be used as given (layout, pairs or mask encoding).

    Example:
        >>> isinstance(DatasetError("x: no pairs"), ValueError)
        True
    """


class MissingFolderError(DatasetError, FileNotFoundError):
    """The data folder, or a sub-folder its layout needs, does not exist.

    Example:
        >>> err = MissingFolderError("/d: no such folder")
        >>> isinstance(err, FileNotFoundError), isinstance(err, ValueError), str(err)
        (True, True, '/d: no such folder')
    """


def describe_folder(root: Path, limit: int = 6) -> str:
    """What ``root`` holds, for error messages: its sub-folders, or its file count.

    Args:
        root: an existing folder.
        limit: the most sub-folder names listed. Default 6.

    Returns:
        ``"found the sub-folders a/, b/"`` (with ``"and N more"``), ``"found 3 files and
        no sub-folders"`` or ``"the folder is empty"``; hidden entries are not counted.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     (Path(d) / "images").mkdir()
        ...     describe_folder(Path(d))
        'found the sub-folders images/'
    """
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    dirs = sorted(p.name for p in entries if p.is_dir())
    if dirs:
        shown = ", ".join(f"{d}/" for d in dirs[:limit])
        more = f" and {len(dirs) - limit} more" if len(dirs) > limit else ""
        return f"found the sub-folders {shown}{more}"
    if entries:
        return f"found {len(entries)} files and no sub-folders"
    return "the folder is empty"
