"""``python -m segshield`` behaves as the ``segshield`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import segshield
from segshield.cli.main import build_parser


def _run_module(*args: str) -> subprocess.CompletedProcess:
    src = str(Path(segshield.__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "COLUMNS": "100",
    }
    return subprocess.run(
        [sys.executable, "-m", "segshield", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_help_is_the_cli_help(monkeypatch):
    out = _run_module("--help")
    assert out.returncode == 0, out.stderr
    monkeypatch.setenv("COLUMNS", "100")
    assert out.stdout == build_parser().format_help()
    assert out.stdout.startswith("usage: segshield ")


def test_version():
    out = _run_module("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"segshield {segshield.__version__}\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("no-such-command",), "invalid choice: 'no-such-command'"),
        (("attack", "--model", "m"), "the following arguments are required: --data"),
    ],
)
def test_bad_arguments_exit_2_with_the_cli_message(args, message):
    out = _run_module(*args)
    assert out.returncode == 2
    assert out.stderr.startswith("usage: segshield ") and message in out.stderr
