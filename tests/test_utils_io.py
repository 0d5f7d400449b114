"""Atomic writes: content, permissions like a plain open(), no temporary files left, stale
temporary files of killed writers recognised and removed."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys

import pytest

from segshield.utils.imageio import atomic_write_bytes, remove_stale_temp_files


def test_atomic_write_content_and_permissions(tmp_path):
    target = tmp_path / "sub" / "out.bin"
    atomic_write_bytes(target, b"abc")
    assert target.read_bytes() == b"abc"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["out.bin"]


def test_atomic_write_failure_leaves_old_file(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temp_files_are_named_as_ours(tmp_path, monkeypatch):
    seen = []
    real = os.replace

    def spy(src, dst):
        seen.append(os.path.basename(src))
        real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    atomic_write_bytes(tmp_path / "a.png", b"x")
    assert re.fullmatch(rf"\.a\.png\.segshield-{os.getpid()}\.\w+\.tmp", seen[0])


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    stale = sub / f".x.png.segshield-{dead_pid()}.abc123_z.tmp"
    live = tmp_path / f".y.png.segshield-{os.getpid()}.abcdefgh.tmp"
    foreign = [tmp_path / ".z.png.tmp", tmp_path / ".z.png.segshield-x.abc.tmp", tmp_path / "a.png"]
    for p in (stale, live, *foreign):
        p.write_bytes(b"partial")
    assert remove_stale_temp_files(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and all(p.exists() for p in foreign)
    assert remove_stale_temp_files(tmp_path / "missing") == []
