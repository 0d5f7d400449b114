"""The CLI spells some library choices literally (to build the parser without torch);
these tests keep the two in step."""

from __future__ import annotations

import argparse

import pytest

from segshield.cli.main import build_parser
from segshield.data._pairs import SPLITS
from segshield.defenses.rounding import GRADIENTS
from segshield.training.loop import PRECISIONS
from segshield.tuning.quantize import PAD_MODES as TABLE_PAD_MODES


def _choices(command: str, option: str) -> tuple:
    sub = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    ).choices[command]
    action = next(a for a in sub._actions if option in a.option_strings)
    return tuple(action.choices)


@pytest.mark.parametrize(
    ("command", "option", "want"),
    [
        ("train", "--precision", PRECISIONS),
        ("tune", "--pad", TABLE_PAD_MODES),
        ("analyze", "--pad", TABLE_PAD_MODES),
        ("tune", "--val-split", SPLITS),
        ("tune", "--heldout-split", SPLITS),
        ("analyze", "--split", SPLITS),
        ("attack", "--adaptive", tuple(g for g in GRADIENTS if g != "exact")),
    ],
)
def test_cli_choices_match_the_library(command, option, want):
    assert _choices(command, option) == want
