"""Results store: a tidy SQLite table, one row per sample x model x attack x defence.

A results folder holds ``results.sqlite`` and ``manifest.json`` (configuration, seed,
package versions, git commit when available, machine). Rows are committed in atomic
transactions, and the key ``(model, dataset, attack, adaptive, defense, sample)`` is
unique, so a killed run re-run with the same configuration continues where it stopped:
finished rows are neither recomputed (the harness asks :meth:`ResultStore.done_keys`)
nor duplicated. A store opened for writing holds the folder's lock
(:func:`~segshield.evaluation.lock.lock_folder`): a second writer is refused, naming the
process that holds it. A folder whose run wrote no row yet takes a new configuration; one
with rows refuses it, naming the settings that differ. Metric columns are added as they
appear; rounding happens only when rendering. SQLite stores NaN as NULL; rows read back
turn NULL metrics into NaN. The columns of :data:`TEXT_COLUMNS` (``worst_attack``: the
attack that won a worst-case row) hold text, NULL read back as ``None``; a folder written
before such a column existed gets it when its first row needs it (older rows: NULL).
"""

from __future__ import annotations

import json
import logging
import math
import platform
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from segshield.errors import UsageError
from segshield.evaluation.lock import lock_folder
from segshield.utils.imageio import atomic_write_bytes

__all__ = ["KEY_COLUMNS", "TEXT_COLUMNS", "ResultStore", "build_manifest", "RowKey"]

log = logging.getLogger(__name__)

KEY_COLUMNS = ("model", "dataset", "attack", "adaptive", "defense", "sample")
RowKey = tuple[str, str, str, int, str, str]
#: Non-key columns that hold text, not numbers.
TEXT_COLUMNS = ("worst_attack",)
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
DB_NAME = "results.sqlite"
MANIFEST_NAME = "manifest.json"


def _git_commit() -> str | None:
    """The git commit of the installed source tree, or ``None`` outside a checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def build_manifest(config: dict[str, Any], seed: int) -> dict[str, Any]:
    """Describe a run: configuration, seed, package versions, git commit and machine.

    Args:
        config: the run's settings as plain JSON (``EvalConfig.to_dict()``).
        seed: the run's seed.

    Returns:
        A JSON-serialisable dictionary.

    Example:
        >>> m = build_manifest({"seed": 0}, 0)
        >>> sorted(m)[:3]
        ['config', 'created', 'git_commit']
    """
    import os
    from importlib import metadata

    import numpy
    import PIL
    import torch

    import segshield

    versions = {
        "segshield": segshield.__version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "Pillow": PIL.__version__,
    }
    for pkg in ("safetensors", "tqdm", "PyYAML"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    machine = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return {
        "config": config,
        "seed": seed,
        "versions": versions,
        "git_commit": _git_commit(),
        "machine": machine,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


class ResultStore:
    """SQLite results table of one evaluation run, resumable and append-only.

    Args:
        folder: results folder (created when missing).
        readonly: open an existing store for reading only (reports). Default ``False``.

    Raises:
        FileNotFoundError: ``readonly`` and the folder holds no ``results.sqlite``.
        FolderBusyError: (writing) another process writes to the folder.
        ValueError: ``results.sqlite`` is not a readable SQLite database (damaged,
            truncated, or another file).

    Example:
        >>> import tempfile
        >>> store = ResultStore(tempfile.mkdtemp())
        >>> key = ("m", "phantom-derm", "asma", 0, "identity", "s0")
        >>> store.add([dict(zip(KEY_COLUMNS, key), clean_dice=0.9)])
        >>> key in store.done_keys(), store.rows()[0]["clean_dice"]
        (True, 0.9)
    """

    def __init__(self, folder: str | Path, *, readonly: bool = False) -> None:
        self.folder = Path(folder)
        self.path = self.folder / DB_NAME
        self.readonly = readonly
        self._lock = None
        if readonly:
            if not self.path.is_file():
                raise FileNotFoundError(
                    f"results: {self.folder} holds no {DB_NAME}; "
                    "pass the folder written by `segshield evaluate -o`"
                )
            self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        else:
            self._lock = lock_folder(self.folder)
            self._conn = sqlite3.connect(self.path)
        try:
            self._check_database()
        except BaseException:
            self.close()
            raise

    def _check_database(self) -> None:
        """Check the file is a whole SQLite database; create the tables when writing."""
        try:
            (verdict,) = self._conn.execute("PRAGMA quick_check").fetchone()
            if verdict != "ok":
                raise sqlite3.DatabaseError(verdict)
            if self.readonly:
                return
            keys = ", ".join(
                f"{k} {'INTEGER' if k == 'adaptive' else 'TEXT'} NOT NULL" for k in KEY_COLUMNS
            )
            pk = ", ".join(KEY_COLUMNS)
            with self._conn:
                for table in ("results", "classifier"):
                    self._conn.execute(
                        f"CREATE TABLE IF NOT EXISTS {table} ({keys}, PRIMARY KEY ({pk}))"
                    )
                self._conn.execute(
                    f"CREATE TABLE IF NOT EXISTS examples ({keys}, kind TEXT NOT NULL, "
                    f"png BLOB NOT NULL, PRIMARY KEY ({pk}, kind))"
                )
        except sqlite3.DatabaseError as exc:
            raise ValueError(
                f"results: {self.path} is not a readable SQLite database ({exc}): damaged, "
                "truncated or another file; move it away and run `segshield evaluate` again"
            ) from exc

    # -- manifest -----------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.folder / MANIFEST_NAME

    def manifest(self) -> dict[str, Any] | None:
        """The run's manifest, or ``None`` when none was written."""
        if not self.manifest_path.is_file():
            return None
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def start_run(self, config: dict[str, Any], digest: str, seed: int) -> bool:
        """Write the manifest of a new run, or check a resumed run matches it.

        Args:
            config: the run's settings (plain JSON).
            digest: hash of ``config``; a resumed run must have the same one.
            seed: the run's seed.

        Returns:
            ``True`` when an earlier run with this configuration is resumed.

        Raises:
            UsageError: the folder holds rows of a run with a different configuration.
        """
        old = self.manifest()
        if old is not None and not self.check_config(config, digest):
            log.warning(
                "results: %s holds a run of another configuration that wrote no row; "
                "starting this run in its place",
                self.folder,
            )
            old = None
        if old is not None:
            old.setdefault("resumed", []).append(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            self._write_manifest(old)
            return True
        manifest = build_manifest(config, seed)
        manifest["config_digest"] = digest
        self._write_manifest(manifest)
        return False

    def check_config(self, config: dict[str, Any], digest: str) -> bool:
        """Whether this folder's run can be resumed with ``config``.

        Args:
            config: the new run's settings (plain JSON).
            digest: hash of ``config``.

        Returns:
            ``True`` when the folder holds a run with this configuration, ``False`` when
            it holds none, or one that wrote no row yet (its manifest will be replaced).

        Raises:
            UsageError: the folder holds rows of a run with another configuration (the
                message names the settings that differ).
        """
        old = self.manifest()
        if old is None:
            return False
        if old.get("config_digest") == digest:
            return True
        rows = self._row_count()
        if rows == 0:
            return False
        changed = _differences(old.get("config") or {}, config)
        raise UsageError(
            f"results: {self.folder} holds {rows} row(s) of a run with a different "
            f"configuration ({changed}); use another -o folder, or the same settings to resume"
        )

    def _row_count(self) -> int:
        """Rows of both tables (a table missing from an old read-only store counts 0)."""
        return sum(
            int(self._conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
            for t in ("results", "classifier")
            if self._columns(t)
        )

    def update_manifest(self, **fields: Any) -> None:
        """Merge ``fields`` into the manifest (e.g. model descriptions), atomically."""
        manifest = self.manifest() or {}
        manifest.update(fields)
        self._write_manifest(manifest)

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        text = json.dumps(manifest, indent=2, sort_keys=True, default=str)
        atomic_write_bytes(self.manifest_path, text.encode("utf-8"))

    # -- rows ---------------------------------------------------------------------
    def _columns(self, table: str = "results") -> list[str]:
        return [r[1] for r in self._conn.execute(f"PRAGMA table_info({table})")]

    def metric_columns(self, table: str = "results") -> list[str]:
        """Names of the metric columns of ``table``, in the order they were added."""
        return [c for c in self._columns(_table(table)) if c not in KEY_COLUMNS]

    def done_keys(self, table: str = "results") -> set[RowKey]:
        """Keys of every finished row of ``table`` (``"results"`` or ``"classifier"``)."""
        cur = self._conn.execute(f"SELECT {', '.join(KEY_COLUMNS)} FROM {_table(table)}")
        return {tuple(r) for r in cur}

    def add(
        self,
        rows: Iterable[dict[str, Any]],
        examples: Iterable[tuple[RowKey, str, bytes]] = (),
        table: str = "results",
    ) -> None:
        """Insert rows (and example images) in one atomic transaction.

        Args:
            rows: dictionaries with every key column and any metric columns (numbers;
                NaN is stored as NULL).
            examples: ``(key, kind, png_bytes)`` image tiles for the report.
            table: ``"results"`` (segmentation rows) or ``"classifier"`` (classifier
                rows). Default ``"results"``.

        Raises:
            ValueError: a row lacks a key column or has a badly named metric.
            sqlite3.IntegrityError: a row with the same key already exists (nothing of
                this call is committed).
        """
        if self.readonly:
            raise ValueError("results: store opened read-only; open it without readonly=True")
        table = _table(table)
        rows = list(rows)
        examples = list(examples)
        with self._conn:
            have = set(self._columns(table))
            for row in rows:
                missing = [k for k in KEY_COLUMNS if k not in row]
                if missing:
                    raise ValueError(f"row: missing key column(s) {', '.join(missing)}")
                for name in row:
                    if name in have:
                        continue
                    if not _NAME.match(name):
                        raise ValueError(
                            f"row: metric name {name!r} must be lower-case letters, digits, _"
                        )
                    kind = "TEXT" if name in TEXT_COLUMNS else "REAL"
                    self._conn.execute(f'ALTER TABLE {table} ADD COLUMN "{name}" {kind}')
                    have.add(name)
                names = list(row)
                cols = ", ".join(f'"{n}"' for n in names)
                marks = ", ".join("?" for _ in names)
                values = [_to_sql(row[n]) for n in names]
                self._conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", values)
            for key, kind, png in examples:
                self._conn.execute(
                    f"INSERT OR REPLACE INTO examples ({', '.join(KEY_COLUMNS)}, kind, png) "
                    f"VALUES ({', '.join('?' * (len(KEY_COLUMNS) + 2))})",
                    (*key, kind, sqlite3.Binary(png)),
                )

    def rows(self, table: str = "results") -> list[dict[str, Any]]:
        """Every row in insertion order; NULL metrics read NaN (text: None), adaptive a bool."""
        table = _table(table)
        cols = self._columns(table)
        out = []
        if not cols:  # a read-only store written before the table existed
            return out
        for values in self._conn.execute(f"SELECT * FROM {table} ORDER BY rowid"):
            row = dict(zip(cols, values, strict=True))
            for c in cols:
                if c not in KEY_COLUMNS and c not in TEXT_COLUMNS and row[c] is None:
                    row[c] = math.nan
            row["adaptive"] = bool(row["adaptive"])
            out.append(row)
        return out

    def examples(self) -> list[tuple[RowKey, dict[str, bytes]]]:
        """Example tiles grouped by row key, in key order."""
        grouped: dict[RowKey, dict[str, bytes]] = {}
        cur = self._conn.execute(
            f"SELECT {', '.join(KEY_COLUMNS)}, kind, png FROM examples ORDER BY rowid"
        )
        for r in cur:
            grouped.setdefault(tuple(r[:6]), {})[r[6]] = bytes(r[7])
        return list(grouped.items())

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def close(self) -> None:
        """Close the database connection and release the folder's lock."""
        self._conn.close()
        if self._lock is not None:
            self._lock.release()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    """``name: OLD in the folder, NEW now; ...`` for the settings that differ."""

    def show(value: Any) -> str:
        text = json.dumps(value)
        return text if len(text) <= 60 else text[:57] + "..."

    names = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if not names:
        return "the same settings, written by another segshield version"
    return "; ".join(
        f"{k}: {show(old.get(k))} in the folder, {show(new.get(k))} now" for k in names
    )


def _table(name: str) -> str:
    if name not in ("results", "classifier"):
        raise ValueError(f"table: expected 'results' or 'classifier', got {name!r}")
    return name


def _to_sql(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
