"""Atomic writes: content, permissions like a plain open(), no temporary files left."""

from __future__ import annotations

import os
import stat

import pytest

from segshield.utils.imageio import atomic_write_bytes


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
