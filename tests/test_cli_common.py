"""``segshield.cli._common``: the shared arguments, ``--device`` and the exit status."""

from __future__ import annotations

import argparse
import logging

import pytest
import torch

from segshield.cli import _common as common


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    common.add_model(p, "checkpoint")
    common.add_data(p)
    common.add_seed(p)
    common.add_batch_size(p, None, shown=8)
    common.add_limit(p)
    common.add_size(p)
    common.add_split(p)
    common.add_device(p)
    common.add_output(p)
    return p


def test_shared_arguments_defaults_and_help():
    p = _parser()
    args = p.parse_args(["--model", "m", "--data", "d", "-o", "out"])
    assert vars(args) == {
        "model": "m",
        "data": "d",
        "seed": 0,
        "batch_size": None,
        "limit": None,
        "first": None,  # --first N (file order) beside --limit N (seeded random subset)
        "size": None,
        "split": "val",
        "device": "cpu",
        "output": "out",
    }
    text = " ".join(p.format_help().split())
    assert "cpu, cuda, cuda:N or auto (default cpu)" in text
    assert "train, val, test, all (default val)" in text
    assert "images per batch (default 8)" in text
    with pytest.raises(SystemExit):
        p.parse_args(["--data", "d", "-o", "out"])  # --model is required


def test_repeatable_model_and_data():
    p = argparse.ArgumentParser()
    common.add_model(p, "checkpoints", repeat=True)
    common.add_data(p, repeat=True)
    args = p.parse_args(["--model", "a", "--model", "b", "--data", "x"])
    assert args.model == ["a", "b"] and args.data == ["x"]
    assert p.parse_args([]).model is None


def test_device_arg_resolves_and_names_the_flag():
    assert common.device_arg("cpu") == torch.device("cpu")
    assert common.device_arg("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="^--device: expected auto, cpu, cuda or cuda:N"):
        common.device_arg("tpu")
    with pytest.raises(ValueError, match="^--gpu:"):
        common.device_arg("mps", "--gpu")


def test_exit_code_logs_failures_once(caplog):
    log = logging.getLogger("segshield.test")
    with caplog.at_level(logging.ERROR):
        assert common.exit_code(log, [], "file(s)") == 0
        assert caplog.text == ""
        assert common.exit_code(log, ["a", "b"], "file(s)", "; ") == 1
    assert "2 file(s) failed: a; b" in caplog.text
