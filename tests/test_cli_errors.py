"""User mistakes give one line on stderr naming the argument or file (exit 2 for bad
arguments, 1 for failed work), never a traceback; ``--debug`` shows the traceback."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import types
from pathlib import Path

import pytest
import torch

from segshield.cli import main as cli_main
from segshield.cli.main import main
from segshield.errors import UsageError
from segshield.models import build_model, save


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    stem = tmp_path_factory.mktemp("m") / "tiny"
    save(build_model("small", num_classes=1, width=2), stem)
    return stem


@pytest.fixture(scope="module")
def mismatched(tmp_path_factory, tiny) -> Path:
    """A checkpoint whose JSON says width 4 while its weights are of width 2."""
    stem = tmp_path_factory.mktemp("bad") / "bad"
    stem.with_suffix(".safetensors").write_bytes(tiny.with_suffix(".safetensors").read_bytes())
    cfg = json.loads(tiny.with_suffix(".json").read_text())
    cfg["arch_kwargs"]["width"] = 4
    stem.with_suffix(".json").write_text(json.dumps(cfg))
    return stem


@pytest.fixture
def no_data(monkeypatch):
    """Fail the test if any data set is loaded (errors must come before)."""
    import segshield.data

    def refuse(*args, **kwargs):
        raise AssertionError("a data set was loaded before the arguments were checked")

    monkeypatch.setattr(segshield.data, "load_dataset", refuse)


def _usage(argv: list[str], capsys, *needles: str) -> str:
    """Run ``argv``; expect exit 2 and one line on stderr holding every needle."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"segshield {argv[0]}: error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err
    return err


# -- the dispatcher -----------------------------------------------------------------


@pytest.fixture
def fake_command(monkeypatch):
    """A sub-command ``fake`` whose ``run`` raises the exception put in ``box[0]``."""
    box: list[BaseException] = []
    mod = types.ModuleType("segshield_fake_command")

    def add_parser(sub):
        return sub.add_parser("fake")

    def run(args: argparse.Namespace) -> int:
        raise box[0]

    mod.add_parser, mod.run = add_parser, run
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    monkeypatch.setitem(cli_main.COMMANDS, "fake", mod.__name__)
    monkeypatch.delenv("SEGSHIELD_DEBUG", raising=False)
    return box


def test_failed_work_is_one_line_and_exit_1(fake_command, capsys):
    fake_command.append(ValueError("data.png: not an image\n(second line)"))
    assert main(["fake"]) == 1
    assert (
        capsys.readouterr().err == "segshield fake: error: data.png: not an image (second line)\n"
    )


def test_os_error_names_its_file(fake_command, capsys):
    fake_command.append(PermissionError(13, "Permission denied", "/out/x.png"))
    assert main(["fake"]) == 1
    assert capsys.readouterr().err == "segshield fake: error: /out/x.png: Permission denied\n"


def test_usage_error_found_late_is_exit_2(fake_command, capsys):
    fake_command.append(UsageError("--model: a classifier, not a segmentation model"))
    _usage(["fake"], capsys, "--model: a classifier")


def test_a_bug_keeps_its_traceback(fake_command):
    fake_command.append(KeyError("bug"))
    with pytest.raises(KeyError):  # not turned into a message: a bug must show where
        main(["fake"])


@pytest.mark.parametrize("how", ["flag-before", "flag-after", "env"])
def test_debug_shows_the_traceback(fake_command, monkeypatch, how):
    fake_command.append(ValueError("expected"))
    argv = {"flag-before": ["--debug", "fake"], "flag-after": ["fake", "--debug"]}
    if how == "env":
        monkeypatch.setenv("SEGSHIELD_DEBUG", "1")
    with pytest.raises(ValueError, match="expected"):
        main(argv.get(how, ["fake"]))


# -- checks before any data loads -----------------------------------------------------


def test_train_model_typo_fails_before_data(tmp_path, capsys, no_data):
    argv = ["train", "--data", "phantom-derm", "--model", "unet:widht=4", "-o", str(tmp_path / "m")]
    _usage(argv, capsys, "--model: unet:widht=4", "unknown setting(s) widht", "width, depth")
    argv = ["train", "--data", "phantom-derm", "--model", "unet:width=0", "-o", str(tmp_path / "m")]
    _usage(argv, capsys, "--model: unet:width=0")


def test_mismatched_checkpoint_is_one_short_line(mismatched, tmp_path, capsys, no_data):
    weights = str(mismatched.with_suffix(".safetensors"))
    out = tmp_path / "res"
    argv = ["evaluate", "--model", str(mismatched), "--data", "phantom-derm", "-o", str(out)]
    err = _usage(argv, capsys, weights, "do not match", "bad.json", "(2, 3, 3, 3) in the file")
    assert len(err) < 400  # not the 18 KB of state-dict keys
    assert not out.exists()  # nothing written before the arguments were checked
    argv = ["attack", "--model", str(mismatched), "--data", "phantom-derm", "-o", str(out)]
    _usage(argv, capsys, weights, "do not match")


def test_evaluate_bad_data_kind_and_device(tiny, tmp_path, capsys, no_data):
    base = ["evaluate", "--model", str(tiny), "-o", str(tmp_path / "res")]
    _usage([*base, "--data", "isci:/tmp"], capsys, "--data", "unknown data-set kind 'isci'")
    _usage([*base, "--data", "phantom-derm", "--device", "gpu"], capsys, "--device", "'gpu'")
    _usage([*base, "--data", "phantom-derm", "--device", "cuda:99"], capsys, "--device")
    assert not (tmp_path / "res").exists()


@pytest.mark.parametrize("damage", ["truncated-json", "truncated-weights", "garbage-weights"])
def test_train_resume_damaged_state(tmp_path, capsys, no_data, damage):
    from segshield.training.state import save_state, state_paths

    model = build_model("small", width=2)
    opt = torch.optim.Adam(model.parameters())
    meta = {"epoch": 1, "history": [], "best_score": 0.5, "architecture": "small"}
    save_state(tmp_path / "run", model, opt, meta)
    wpath, jpath = state_paths(tmp_path / "run")
    target = jpath if damage == "truncated-json" else wpath
    data = target.read_bytes()
    target.write_bytes(b"\x07" * 50 if damage == "garbage-weights" else data[: len(data) // 2])
    argv = ["train", "--data", "phantom-derm", "--model", "small:width=2"]
    argv += ["--resume", str(tmp_path / "run"), "-o", str(tmp_path / "run")]
    _usage(argv, capsys, "--resume", str(target))


def test_train_refuses_to_replace_a_checkpoint(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SEGSHIELD_PROGRESS", "0")
    stem = tmp_path / "run"
    save(build_model("small", width=2), stem)
    before = stem.with_suffix(".safetensors").read_bytes()
    argv = ["train", "--data", "phantom-derm", "--model", "small:width=2", "--size", "16"]
    argv += ["--n", "6", "--epochs", "1", "--batch-size", "2", "-o", str(stem)]
    _usage(argv, capsys, f"{stem}.safetensors exists", "--overwrite", f"--resume {stem}")
    assert stem.with_suffix(".safetensors").read_bytes() == before
    assert main(["-q", *argv, "--overwrite"]) == 0
    assert stem.with_suffix(".safetensors").read_bytes() != before


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_outputs_that_cannot_be_written(tiny, tmp_path, capsys, no_data):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    argv = ["train", "--data", "phantom-derm", "--model", "small", "-o", "/proc/segshield/m"]
    _usage(argv, capsys, "-o: cannot write to /proc/segshield")
    argv = ["evaluate", "--model", str(tiny), "--data", "phantom-derm", "-o", str(blocker / "r")]
    _usage(argv, capsys, f"-o: cannot write to {blocker / 'r'}")
    argv = ["attack", "--model", str(tiny), "--data", "phantom-derm", "-o", "/proc/segshield"]
    _usage(argv, capsys, "-o: cannot write to /proc/segshield")


# -- report -----------------------------------------------------------------------------


@pytest.fixture
def results(tmp_path) -> Path:
    """A results folder with one row, written by the store."""
    from segshield.evaluation.store import KEY_COLUMNS, ResultStore

    folder = tmp_path / "res"
    with ResultStore(folder) as store:
        key = ("m", "d", "a", 0, "none", "s0")
        store.add([{**dict(zip(KEY_COLUMNS, key, strict=True)), "clean_dice": 0.5}])
        store.add([{**dict(zip(KEY_COLUMNS, key[:-1] + ("s1",), strict=True))}])
    return folder


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_report_output_that_cannot_be_written(results, capsys):
    _usage(
        ["report", str(results), "-o", "/proc/x.html"], capsys, "--output: cannot write to /proc"
    )
    assert not Path("/proc/report_figures").exists()


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_report_on_a_damaged_database(results, capsys, damage):
    db = results / "results.sqlite"
    with sqlite3.connect(db) as conn:  # enough pages that a cut loses some
        conn.execute("CREATE TABLE pad (x BLOB)")
        conn.executemany("INSERT INTO pad VALUES (?)", [(b"p" * 3000,)] * 20)
    conn.close()
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x01garbage" * 300)
    _usage(["report", str(results), "--format", "md"], capsys, str(db), "not a readable SQLite")
