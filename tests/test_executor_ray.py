"""The Ray executor on a local 2-CPU cluster started by the tests (loopback only).

Same rows as the local executor; a worker killed mid-run (by its PID) still leaves every
row exactly once; a killed driver rerun resumes without recomputing finished cells; a
cell that fails for good is reported with its samples, the rest completes and the exit
code is 1; ``tune`` with Ray picks the local table.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ray = pytest.importorskip("ray")

from _grid import grid  # noqa: E402  (tests/_grid.py)
from segshield.cli.main import main  # noqa: E402
from segshield.evaluation.cells import row_key  # noqa: E402
from segshield.evaluation.executor import ExecutorSettings, LocalExecutor  # noqa: E402
from segshield.evaluation.ray_executor import RayExecutor  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def cluster():
    """A Ray cluster of this process: 2 CPUs, no dashboard; its GCS address."""
    if ray.is_initialized():
        pytest.skip("this process is already connected to Ray")
    # the workers import segshield from this checkout
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
        runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}},
    )
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def rows_of(outcome) -> dict:
    try:
        return {row_key(r): r for r in outcome.store.rows()}
    finally:
        outcome.store.close()


def test_same_rows_as_the_local_executor(cluster, small_ckpt, tmp_path):
    cfg = grid(small_ckpt, worst_case=True, limit=6)
    local = rows_of(LocalExecutor().run(cfg, tmp_path / "local"))
    outcome = RayExecutor(ExecutorSettings(kind="ray")).run(cfg, tmp_path / "ray")
    assert outcome.failed == [] and outcome.cells == 3
    remote = rows_of(outcome)
    assert remote.keys() == local.keys() and len(local) == 6 * (6 + 3)  # + worst case
    for key, row in local.items():
        other = remote[key]
        assert row.keys() == other.keys()
        for col, value in row.items():
            if col.startswith("t_"):
                continue
            assert value == other[col] or (value != value and other[col] != other[col]), col
    # a rerun finds every row stored and submits nothing
    again = RayExecutor(ExecutorSettings(kind="ray")).run(cfg, tmp_path / "ray")
    assert again.cells == 0 and len(rows_of(again)) == len(local)


def _descendants(root: int) -> dict[int, str]:
    """Process id -> command line of every live descendant of ``root``."""
    parent, cmd = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmd[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
        except OSError:  # the process ended meanwhile
            continue
        parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        p = frontier.pop()
        for child, par in parent.items():
            if par == p and child not in found:
                found[child] = cmd.get(child, "")
                frontier.append(child)
    return found


def _kill_first_busy_worker(killed: list[int], stop: threading.Event) -> None:
    """Kill (SIGKILL) the first worker of this test's cluster seen computing a cell."""
    while not stop.is_set():
        for pid, cmd in _descendants(os.getpid()).items():
            if cmd.startswith("ray::compute_cell"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.05)


def test_killed_worker_is_retried_and_rows_land_once(cluster, small_ckpt, tmp_path):
    cfg = grid(small_ckpt, attacks=["asma:steps=400"], limit=8)  # cells of ~1 s: seen busy
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_first_busy_worker, args=(killed, stop))
    killer.start()
    try:
        outcome = RayExecutor(ExecutorSettings(kind="ray", max_retries=2)).run(cfg, tmp_path / "r")
    finally:
        stop.set()
        killer.join()
    assert len(killed) == 1, "no worker was seen computing a cell"
    assert outcome.failed == []
    rows = rows_of(outcome)
    assert len(rows) == 8 * 6  # every row, once (the key is unique in the store)
    with sqlite3.connect(tmp_path / "r" / "results.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 8 * 6


def _argv(small_ckpt: str, out: Path, *extra: str) -> list[str]:
    return [
        "evaluate",
        "--model",
        small_ckpt,
        "--data",
        "phantom-derm",
        "--size",
        "16",
        "--n",
        "40",
        "--split",
        "all",
        "--limit",
        "12",
        "--batch-size",
        "2",
        "--attack",
        "asma:steps=40",
        "--defense",
        "median:k=3",
        "-o",
        str(out),
        *extra,
    ]


def _stored(db: Path) -> int:
    if not db.is_file():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.OperationalError:  # the table is not created yet, or locked
        return 0


# The driver below kills itself (SIGKILL: no clean-up) right after its first commit, so
# the cut falls at the same place on a fast or a slow machine.
_DRIVER_KILLED_AFTER_FIRST_COMMIT = """
import os, signal, sys
from segshield.cli.main import main
from segshield.evaluation import ray_executor

_commit = ray_executor._commit

def _commit_then_die(run, result):
    n = _commit(run, result)
    os.kill(os.getpid(), signal.SIGKILL)
    return n

ray_executor._commit = _commit_then_die
sys.exit(main(sys.argv[1:]))
"""


def test_killed_driver_resumes_without_recomputing(cluster, small_ckpt, tmp_path, caplog):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(SRC), "SEGSHIELD_PROGRESS": "0"}
    argv = _argv(small_ckpt, out, "--executor", "ray", "--ray-address", cluster)
    driver = subprocess.run(
        [sys.executable, "-c", _DRIVER_KILLED_AFTER_FIRST_COMMIT, "-q", *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=300,
    )
    assert driver.returncode == -signal.SIGKILL
    total = 12 * 2  # 12 samples x (asma through median and none)
    before = _stored(out / "results.sqlite")
    assert before == 4  # one whole cell: 2 samples x 2 rows
    with caplog.at_level(logging.INFO, logger="segshield.evaluation.ray_executor"):
        assert main(["-q", *argv]) == 0
    planned = [r.getMessage() for r in caplog.records if "cells to compute" in r.getMessage()]
    assert planned == [f"5 of 6 cells to compute ({before} rows stored)"]
    assert _stored(out / "results.sqlite") == total


def _folder_with_a_bad_image(root: Path) -> None:
    """Six 16 px images; the fifth is 24 px (its mask too): its batch cannot be stacked."""
    g = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(6):
        side = 24 if i == 4 else 16
        img = (g.uniform(0, 1, (side, side, 3)) * 255).astype(np.uint8)
        mask = np.zeros((side, side), np.uint8)
        mask[4:10, 4:10] = 255
        Image.fromarray(img).save(root / "images" / f"s{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"s{i}.png")


def test_cell_failing_for_good_is_reported_the_rest_completes(
    cluster, small_ckpt, tmp_path, caplog
):
    data = tmp_path / "data"
    _folder_with_a_bad_image(data)
    out = tmp_path / "run"
    argv = ["-q", "evaluate", "--model", small_ckpt, "--data", f"folder:{data}", "--split", "all"]
    argv += ["--batch-size", "2", "--attack", "fgsm:eps=0.03", "--defense", "median:k=3"]
    argv += ["--untargeted", "-o", str(out), "--executor", "ray"]
    with caplog.at_level(logging.ERROR):
        assert main(argv) == 1
    errors = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert "1 cell(s) failed" in errors and "samples s4, s5" in errors
    assert "stack expects each tensor to be equal size" in errors
    assert _stored(out / "results.sqlite") == 4 * 2  # the other two cells


def test_tune_with_ray_picks_the_local_table(cluster, tmp_path):
    from segshield.data.splits import load_split
    from segshield.tuning import TuneConfig, TuneData, tune_table
    from segshield.tuning.parallel import RayTableScorer

    # a model with a real Dice on the phantoms: foreground where the image is dark
    net = torch.nn.Conv2d(3, 1, 1)
    with torch.no_grad():
        net.weight.fill_(-20.0 / 3)
        net.bias.fill_(10.0)
    split = load_split("phantom-derm", "all", size=16, n=24, limit=24)
    x, m = split.images, split.masks
    adv = (x + 0.05 * torch.sign(torch.randn_like(x))).clamp(0, 1)
    data = TuneData(
        x[:12], m[:12], x[12:], m[12:], val_adversarial=adv[:12], heldout_adversarial=adv[12:]
    )
    cfg = dict(budget=24, jpeg_qualities=(), seed=3, max_benign_loss=0.05)
    local = tune_table(net, data, TuneConfig(**cfg))
    remote = tune_table(net, data, TuneConfig(**cfg), table_scorer=RayTableScorer())
    assert local.validation["tuned"]["recovered_dice"] > 0.1  # not a trivial search
    assert remote.candidate.key() == local.candidate.key()
    assert remote.evaluations == local.evaluations
    assert torch.equal(remote.table, local.table)


def test_tune_cli_with_ray_writes_the_local_table(cluster, small_ckpt, tmp_path):
    import json

    argv = [
        "-q",
        "tune",
        "--model",
        small_ckpt.removesuffix(".safetensors"),
        "--data",
        "phantom-derm",
    ]
    argv += ["--size", "16", "--limit", "6", "--attack", "fgsm:eps=0.03", "--budget", "10"]
    argv += ["--jpeg", "75", "--channel-scales", "1,2"]
    codes, tables = [], []
    for name, extra in (("local", []), ("ray", ["--executor", "ray"])):
        out = tmp_path / f"{name}.json"
        codes.append(main([*argv, "-o", str(out), *extra]))
        data = json.loads(out.read_text())
        tables.append((data["table"], data["evaluations"], data["heldout"]))
    assert codes[0] == codes[1] and tables[0] == tables[1]
