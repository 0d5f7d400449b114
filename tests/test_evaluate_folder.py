"""One writer per results folder: the lock, kill -9 and resume, concurrent runs, and a
folder whose run wrote nothing (which must not block the corrected command)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import segshield
from segshield.cli.main import main
from segshield.errors import FolderBusyError
from segshield.evaluation.lock import LOCK_NAME, lock_folder
from segshield.evaluation.store import KEY_COLUMNS, ResultStore

SRC = str(Path(segshield.__file__).resolve().parents[1])
ENV = {**os.environ, "PYTHONPATH": SRC, "SEGSHIELD_PROGRESS": "0", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A seeded tiny segmentation checkpoint (its stem)."""
    from segshield.models import build_model, save

    torch.manual_seed(0)
    return save(build_model("small:width=2"), tmp_path_factory.mktemp("m") / "t")[0].with_suffix("")


def _argv(ckpt: Path, out: Path, defense: str = "jpeg:q=75", limit: int = 4) -> list[str]:
    return [
        "-q", "evaluate", "--model", str(ckpt), "--data", "phantom-derm", "--size", "16",
        "--n", "8", "--split", "all", "--limit", str(limit), "--batch-size", "1",
        "--attack", "fgsm:eps=0.03", "--defense", defense, "--examples", "1", "-o", str(out),
    ]  # fmt: skip


def _rows(folder: Path) -> list[tuple]:
    with sqlite3.connect(folder / "results.sqlite") as conn:
        return sorted(conn.execute("SELECT * FROM results").fetchall(), key=lambda r: r[:6])


def _holder(folder: Path) -> subprocess.Popen:
    """A process that takes the folder's lock (lock.py loaded alone: no torch), then waits."""
    code = textwrap.dedent(
        f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location(
            "lock", {str(Path(SRC) / "segshield" / "evaluation" / "lock.py")!r})
        lock = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(lock)
        held = lock.lock_folder(sys.argv[1])
        print("locked", flush=True)
        sys.stdin.read()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_lock_names_the_holder_and_a_killed_holder_does_not_block(tmp_path):
    proc = _holder(tmp_path)
    try:
        with pytest.raises(FolderBusyError, match=rf"in use by process {proc.pid} on host "):
            lock_folder(tmp_path)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert str(proc.pid) in (tmp_path / LOCK_NAME).read_text()  # the stale file stays
    with lock_folder(tmp_path):  # the kernel dropped the dead process's lock
        info = json.loads((tmp_path / LOCK_NAME).read_text())
        assert info["pid"] == os.getpid()
        with lock_folder(tmp_path) as inner:  # nested in one process
            assert inner.folder == tmp_path
        with ResultStore(tmp_path) as store:  # a writer in the holding process
            assert len(store) == 0
    with lock_folder(tmp_path):  # released by the last hold
        pass


def test_evaluate_into_a_folder_in_use_exits_2_naming_the_process(ckpt, tmp_path, capsys):
    out = tmp_path / "res"
    proc = _holder(out)
    try:
        with pytest.raises(SystemExit) as exc:
            main(_argv(ckpt, out))
    finally:
        proc.stdin.close()
        proc.wait()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"-o: {out} is in use by process {proc.pid} on host" in err and err.count("\n") == 1
    assert not (out / "manifest.json").exists() and not (out / "results.sqlite").exists()


def test_a_run_that_wrote_no_row_does_not_block(ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SEGSHIELD_PROGRESS", "0")
    out = tmp_path / "res"
    with ResultStore(out) as store:  # what a run that failed before its first row leaves
        store.start_run({"models": ["other"], "seed": 5}, "0123456789abcdef", 5)
    assert main(_argv(ckpt, out, limit=2)) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["defenses"] == ["jpeg:q=75", "none"]
    assert len(_rows(out)) == 4


def test_other_settings_are_named(ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SEGSHIELD_PROGRESS", "0")
    out = tmp_path / "res"
    assert main(_argv(ckpt, out, limit=2)) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(_argv(ckpt, out, defense="jpeg:q=50", limit=2))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "holds 4 row(s) of a run with a different configuration" in err
    assert 'defenses: ["jpeg:q=75", "none"] in the folder, ["jpeg:q=50", "none"] now' in err
    assert "limit" not in err  # only what differs


_KILLER = """
import os, signal, sys
from segshield.evaluation import store
add = store.ResultStore.add
calls = []
def killing_add(self, *args, **kwargs):
    add(self, *args, **kwargs)
    calls.append(1)
    if len(calls) == int(os.environ["KILL_AFTER"]):
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 between two transactions
store.ResultStore.add = killing_add
from segshield.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_loses_and_duplicates_nothing(ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("SEGSHIELD_PROGRESS", "0")
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main(_argv(ckpt, whole)) == 0
    env = {**ENV, "KILL_AFTER": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", _KILLER, *_argv(ckpt, killed)], env=env, capture_output=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert len(_rows(killed)) == 3 * 2  # 3 transactions of 1 sample x 2 defences
    assert main(_argv(ckpt, killed)) == 0  # the dead run's lock does not block
    got, want = _rows(killed), _rows(whole)
    assert [r[:6] for r in got] == [r[:6] for r in want]  # same keys, each once
    with sqlite3.connect(killed / "results.sqlite") as conn:
        names = [r[1] for r in conn.execute("PRAGMA table_info(results)")]
    values = [i for i, n in enumerate(names) if n not in KEY_COLUMNS and not n.startswith("t_")]
    assert len(values) > 10
    for a, b in zip(got, want, strict=True):  # the resumed rows equal a whole run's
        assert [a[i] for i in values] == pytest.approx([b[i] for i in values], nan_ok=True)
    manifest = json.loads((killed / "manifest.json").read_text())
    assert len(manifest["resumed"]) == 1


_RACER = """
import os, sys, time
from pathlib import Path
import segshield.evaluation  # the slow imports first, so that both runs start together
from segshield.cli.main import main
print("ready", flush=True)
while not Path(os.environ["GO"]).exists():
    time.sleep(0.002)
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_two_runs_into_one_folder_stay_consistent(ckpt, tmp_path):
    """Released together with different --defense: one runs, the other is refused (in use,
    or a different configuration when it comes second); the manifest matches the rows."""
    out, go = tmp_path / "res", tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, *_argv(ckpt, out, defense=d, limit=2)],
            env={**ENV, "GO": str(go)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for d in ("jpeg:q=75", "jpeg:q=50")
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    go.touch()
    results = [(p.wait(), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert sorted(code for code, _ in results) == [0, 2], results
    err = next(e for code, e in results if code == 2)
    assert "is in use by process" in err or "different configuration" in err, err
    manifest = json.loads((out / "manifest.json").read_text())
    defenses = {r[4] for r in _rows(out)}
    assert defenses == set(manifest["config"]["defenses"]) == set(manifest["defenses"])
    assert len(_rows(out)) == 2 * 2


def test_a_busy_folder_waits_a_moment_for_the_holders_details(tmp_path):
    """The holder writes its details just after taking the lock; a second run that reads
    the lock file in between waits for them instead of naming nobody."""
    import json
    import threading

    from segshield.evaluation.lock import _read_holder

    path = tmp_path / "lock"
    path.write_text("")
    details = json.dumps({"pid": 4321, "host": "h"}) + "\n"
    timer = threading.Timer(0.1, path.write_text, args=(details,))
    timer.start()
    with open(path, encoding="utf-8") as fh:
        assert _read_holder(fh) == details
    timer.join()
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('{"pid": 1')  # never completed: give up after tries * wait_s
    with open(path, encoding="utf-8") as fh:
        assert _read_holder(fh, tries=2, wait_s=0.01) == '{"pid": 1'
