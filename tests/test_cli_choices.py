"""``segshield.choices`` holds the choice tuples: the library's equal them, the CLI reads them,
and importing them (or parsing a command line) does not import torch."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

import segshield
from segshield import choices
from segshield.attacks import list_targets
from segshield.cli.main import build_parser
from segshield.data._pairs import SPLITS
from segshield.data.dataset import RESIZE_POLICIES
from segshield.defenses.rounding import GRADIENTS
from segshield.evaluation import store, summary
from segshield.evaluation.demo import REPRODUCE_DATASETS
from segshield.training.loop import PRECISIONS
from segshield.tuning.quantize import PAD_MODES as TABLE_PAD_MODES
from segshield.utils.device import DEVICE_CHOICES


def _choices(command: str, option: str) -> tuple:
    sub = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    ).choices[command]
    action = next(a for a in sub._actions if option in a.option_strings)
    return tuple(action.choices)


@pytest.mark.parametrize(
    ("name", "library"),
    [
        ("SPLITS", SPLITS),
        ("PRECISIONS", PRECISIONS),
        ("TABLE_PAD_MODES", TABLE_PAD_MODES),
        ("GRADIENTS", GRADIENTS),
        ("ADAPTIVE_GRADIENTS", tuple(g for g in GRADIENTS if g != "exact")),
        ("TARGET_KINDS", tuple(list_targets())),
        ("DEVICE_CHOICES", DEVICE_CHOICES),
        ("RESIZE_POLICIES", RESIZE_POLICIES),
        ("REPRODUCE_DATASETS", tuple(REPRODUCE_DATASETS)),
    ],
)
def test_choices_equal_the_library_tuples(name, library):
    assert getattr(choices, name) == library


def test_report_formats_and_tables_are_the_ones_the_library_accepts():
    rows = [{"model": "m", "dataset": "d", "attack": "a", "adaptive": False, "defense": "x"}]
    for fmt in choices.REPORT_FORMATS:
        assert summary.format_summary(rows, fmt)
    with pytest.raises(ValueError, match=", ".join(repr(f) for f in choices.REPORT_FORMATS)):
        summary.format_summary(rows, "html")
    for table in choices.REPORT_TABLES:
        assert store._table(table) == table
    with pytest.raises(ValueError, match="'results' or 'classifier'"):
        store._table("bogus")


@pytest.mark.parametrize(
    ("command", "option", "want"),
    [
        ("train", "--precision", choices.PRECISIONS),
        ("train", "--task", choices.TRAIN_TASKS),
        ("train", "--device", choices.DEVICE_CHOICES),
        ("tune", "--pad", choices.TABLE_PAD_MODES),
        ("analyze", "--pad", choices.TABLE_PAD_MODES),
        ("tune", "--val-split", choices.SPLITS),
        ("tune", "--heldout-split", choices.SPLITS),
        ("analyze", "--split", choices.SPLITS),
        ("attack", "--adaptive", choices.ADAPTIVE_GRADIENTS),
        ("attack", "--bits", choices.PNG_BITS),
        ("report", "--format", choices.REPORT_FORMATS),
        ("report", "--table", choices.REPORT_TABLES),
        ("reproduce", "--dataset", choices.REPRODUCE_DATASETS),
    ],
)
def test_cli_choices_match_the_library(command, option, want):
    assert _choices(command, option) == want


def test_choices_and_argument_parsing_do_not_import_torch():
    code = (
        "import sys\n"
        "import segshield.choices\n"
        "assert 'torch' not in sys.modules, 'segshield.choices imported torch'\n"
        "from segshield.cli.main import build_parser\n"
        "p = build_parser()\n"
        "for argv in (['demo'], ['attack', '--model', 'm', '--data', 'd', '-o', 'o'],\n"
        "             ['defend', 'x.png', '-o', 'o', '--device', 'auto'],\n"
        "             ['evaluate', '-o', 'o'], ['data', 'check', '--data', 'd']):\n"
        "    p.parse_args(argv)\n"
        "assert 'torch' not in sys.modules, 'argument parsing imported torch'\n"
        "print('torch-free')\n"
    )
    src = str(Path(segshield.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "torch-free"


def test_eval_config_splits_are_the_choices():
    from segshield.evaluation.config import EvalConfig

    for split in choices.SPLITS:
        assert EvalConfig(models=["m"], datasets=["d"], split=split).split == split
    with pytest.raises(ValueError, match=", ".join(repr(s) for s in choices.SPLITS)):
        EvalConfig(models=["m"], datasets=["d"], split="dev")
