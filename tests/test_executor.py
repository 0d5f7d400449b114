"""The executor seam without a cluster: settings, cells computed apart, dry runs, no Ray.

A cell computed on its own (:func:`segshield.evaluation.cells.compute_cell`, what a Ray
worker runs) must give the rows of the local harness; the Ray executor itself is tested
in ``test_executor_ray.py``.
"""

from __future__ import annotations

import math
import sys

import pytest
import torch

from _grid import grid  # tests/_grid.py
from segshield.cli.main import main
from segshield.evaluation.cells import compute_cell, plan_grid, row_key
from segshield.evaluation.estimate import dry_run, planning_run
from segshield.evaluation.executor import ExecutorSettings, LocalExecutor, get_executor
from segshield.evaluation.store import ResultStore
from segshield.utils.throughput import measure_throughput


def usage_error(argv: list[str]) -> None:
    """``main(argv)`` exits 2 (a bad argument)."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


def non_timing(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("t_")}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        a[k] == b[k] or (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k]))
        for k in a
    )


def test_cells_computed_apart_give_the_local_rows(small_ckpt, tmp_path):
    cfg = grid(small_ckpt)
    outcome = LocalExecutor().run(cfg, tmp_path / "local")
    local = {row_key(r): non_timing(r) for r in outcome.store.rows()}
    outcome.store.close()
    plan = plan_grid(planning_run(cfg, None))
    assert [c.start for c in plan.cells] == [0, 2, 4]
    assert [len(c.samples) for c in plan.cells] == [2, 2, 1]
    rows = {}
    for cell in reversed(plan.cells):  # another order than the local one
        result = compute_cell(cfg.to_dict(), cell.model, cell.dataset, cell.start, threads=1)
        assert {row_key(r) for r in result.rows} == set(cell.keys)
        rows.update({row_key(r): non_timing(r) for r in result.rows})
    # 5 samples x (asma through 3 defences + fgsm adaptive through each of 3)
    assert len(local) == 5 * 6 and rows.keys() == local.keys()
    assert all(same(rows[k], local[k]) for k in local)


def test_plan_counts_stored_rows_and_missing_cells(small_ckpt, tmp_path):
    cfg = grid(small_ckpt, limit=4)
    out = tmp_path / "r"
    LocalExecutor().run(cfg, out).store.close()
    with ResultStore(out) as store:  # drop one row of the second cell
        key = sorted(store.done_keys())[-1]
        store._conn.execute(
            "DELETE FROM results WHERE sample = ? AND defense = ?", (key[5], key[4])
        )
        store._conn.commit()
    plan = plan_grid(planning_run(cfg, out))
    missing = plan.missing()
    assert len(plan.cells) == 2 and len(missing) == 1 and key in missing[0].keys


def test_dry_run_counts_the_grid_and_estimates_hours(small_ckpt, tmp_path, capsys):
    cfg = grid(small_ckpt)
    text, sizes = dry_run(cfg, tmp_path / "none", throughput=10.0)
    (s,) = sizes
    assert (s.cells, s.samples, s.rows, s.stored) == (3, 5, 30, 0)
    # asma: 5 samples x 3 steps; fgsm adaptive: 5 x 1 step through each of 3 defences
    assert s.iterations == {"asma:steps=3": 15, "fgsm:eps=0.03 (adaptive)": 15}
    forwards = 5 * (1 + 3 + 1 * (1 + 3) + 1 * 3 * 2)
    assert s.forwards == forwards
    assert s.device_hours() == pytest.approx((30 + forwards / 3) / 10 / 3600)
    assert "3 cells" in text and "asma:steps=3: 15 image-iterations" in text
    assert not (tmp_path / "none").exists()
    # the CLI: prints the grid, writes nothing
    out = tmp_path / "cli"
    argv = [
        "evaluate",
        "--model",
        small_ckpt,
        "--data",
        "phantom-derm",
        "--size",
        "16",
        "--n",
        "20",
    ]
    argv += ["--split", "all", "--limit", "5", "--batch-size", "2", "--attack", "asma:steps=3"]
    argv += ["-o", str(out), "--dry-run", "--throughput", "10", "--executor", "ray"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "grid: 1 model x data set pair(s), 3 cells, 10 rows" in printed
    assert "throughput: 10.0 image-iterations/s (given)" in printed
    assert not out.exists()


def test_measured_throughput_is_positive_and_finite():
    net = torch.nn.Conv2d(3, 1, 3, padding=1)
    value = measure_throughput(net, (3, 16, 16), batch_size=2, seconds=0.05)
    assert 0 < value < math.inf
    with pytest.raises(ValueError, match="seconds"):
        measure_throughput(net, (3, 16, 16), seconds=0)


def test_executor_settings_are_checked():
    with pytest.raises(ValueError, match="'local', 'ray'"):
        ExecutorSettings(kind="dask")
    with pytest.raises(ValueError, match="need --executor ray"):
        ExecutorSettings(gpus_per_task=0.5)
    with pytest.raises(ValueError, match="gpus_per_task"):
        ExecutorSettings(kind="ray", gpus_per_task=-1)
    with pytest.raises(ValueError, match="cpus_per_task"):
        ExecutorSettings(kind="ray", cpus_per_task=0)
    assert get_executor(ExecutorSettings()).name == "local"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--throughput", "5"], "--throughput: only with --dry-run"),
        (["--gpus-per-task", "0.5"], "need --executor ray"),
        (["--executor", "ray", "--cpus-per-task", "-1"], "--cpus-per-task"),
        (["--executor", "ray", "--dry-run", "--throughput", "0"], "--throughput"),
        (["--executor", "ray", "--device", "cuda", "--dry-run"], "needs --gpus-per-task > 0"),
    ],
)
def test_cli_rejects_bad_executor_flags_before_work(small_ckpt, tmp_path, capsys, extra, message):
    out = tmp_path / "o"
    argv = ["evaluate", "--model", small_ckpt, "--data", "phantom-derm", "-o", str(out), *extra]
    usage_error(argv)
    assert message in capsys.readouterr().err
    assert not (out / "results.sqlite").exists()


def test_missing_ray_names_the_extra(small_ckpt, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(ImportError, match=r"segshield\[ray\]"):
        get_executor(ExecutorSettings(kind="ray"))
    from segshield.tuning.parallel import RayTableScorer

    with pytest.raises(ImportError, match=r"segshield\[ray\]"):
        RayTableScorer()
    argv = ["evaluate", "--model", small_ckpt, "--data", "phantom-derm", "--executor", "ray"]
    usage_error([*argv, "-o", str(tmp_path / "o")])
    assert "pip install 'segshield[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "o" / "results.sqlite").exists()


def test_reproduce_and_tune_dry_runs_train_and_write_nothing(small_ckpt, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    root = tmp_path / "origa"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        m = np.zeros((24, 24), np.uint8)
        m[6:18, 6:18] = 1
        m[9:15, 9:15] = 2
        img = (rng.uniform(0, 60, (24, 24, 3)) + (m[..., None] * 90)).astype(np.uint8)
        Image.fromarray(img).save(root / "images" / f"img{i}.png")
        Image.fromarray(m).save(root / "masks" / f"img{i}.png")
    out, cache = tmp_path / "rep", tmp_path / "cache"
    argv = ["reproduce", "--data", f"origa:{root}", "--protocol", "quick", "-o", str(out)]
    argv += ["--cache-dir", str(cache), "--model", "small", "--size", "16", "--width", "2"]
    argv += ["--limit", "3", "--batch-size", "2", "--asma", "asma:steps=7"]
    argv += ["--adaptive", "fgsm:eps=0.03", "--defense", "median:k=3", "--dry-run"]
    assert main([*argv, "--throughput", "4"]) == 0
    printed = capsys.readouterr().out
    # 3 samples in 2 cells; asma 3 x 7 steps, fgsm through median and none: 3 x 1 x 2
    assert "2 cells, 3 samples" in printed
    assert "asma:steps=7: 21 image-iterations" in printed
    assert "fgsm:eps=0.03 (adaptive): 6 image-iterations" in printed
    assert not out.exists() and not (cache / "models").exists()  # nothing trained
    table = tmp_path / "t.json"
    argv = ["tune", "--model", small_ckpt.removesuffix(".safetensors"), "--data", "phantom-derm"]
    argv += ["--size", "16", "--limit", "6", "--attack", "asma:steps=5", "--budget", "10"]
    argv += ["--jpeg", "75", "-o", str(table), "--dry-run", "--throughput", "2"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "search: 10 tables on 6 validation images" in printed
    assert "attack (validation): 30 image-iterations" in printed
    assert not table.exists()


def test_reproduce_evaluation_reports_failed_cells_after_the_report(small_ckpt, tmp_path):
    from segshield.evaluation import demo
    from segshield.evaluation.executor import GridOutcome

    class OneCellFails:
        """The local executor, with one cell reported as failed for good."""

        def run(self, config, output):
            outcome = LocalExecutor().run(config, output)
            return GridOutcome(outcome.store, [("tiny on phantom-derm, samples a, b", "bad")])

    settings = demo.DemoSettings(
        size=16,
        n_eval=2,
        batch_size=2,
        asma="asma:steps=2",
        adaptive="fgsm:eps=0.03",
        defenses=("median:k=3",),
    )
    args = ([small_ckpt], ["phantom-derm"], settings, tmp_path, "t", "cpu")
    with pytest.raises(ValueError, match=r"1 cell\(s\) failed for good: .*samples a, b \(bad\)"):
        demo._evaluate(*args, OneCellFails())
    assert (tmp_path / "report.html").is_file()  # written before the error
    summary, report = demo._evaluate(*args, LocalExecutor())  # resumed, nothing failed
    assert report.is_file() and summary


def test_tune_with_a_table_scorer_and_both_colour_spaces_equals_local():
    """RGB tables go to the scorer, YCbCr candidates are scored locally: same result."""
    from segshield.data.splits import load_split
    from segshield.tuning import TuneConfig, TuneData, tune_table
    from segshield.tuning.parallel import score_chunk
    from segshield.tuning.space import SearchSpace

    calls = []

    def scorer(model, images, adversarial, masks, tables, regions, pad, batch_size):
        calls.append(tables.shape[0])
        return score_chunk(model, images, adversarial, masks, tables, regions, pad, batch_size)

    net = torch.nn.Conv2d(3, 1, 1)
    with torch.no_grad():
        net.weight.fill_(-20.0 / 3)
        net.bias.fill_(10.0)
    split = load_split("phantom-derm", "all", size=16, n=16, limit=16)
    x, m = split.images, split.masks
    adv = x + 0.05 * torch.sign(torch.randn(x.shape, generator=torch.Generator().manual_seed(0)))
    adv = adv.clamp(0, 1)
    data = TuneData(
        x[:8], m[:8], x[8:], m[8:], val_adversarial=adv[:8], heldout_adversarial=adv[8:]
    )
    space = SearchSpace(spaces=("rgb", "ycbcr"))
    cfg = dict(budget=12, jpeg_qualities=(), seed=1, max_benign_loss=0.05, space=space)
    local = tune_table(net, data, TuneConfig(**cfg))
    scored = tune_table(net, data, TuneConfig(**cfg), table_scorer=scorer)
    assert calls and sum(calls) < len(local.evaluations)  # the scorer saw the RGB ones only
    assert scored.candidate.key() == local.candidate.key()
    assert scored.evaluations == local.evaluations
