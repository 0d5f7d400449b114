"""``segshield tune`` and ``segshield analyze`` end to end on tiny phantoms."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from segshield.cli.main import main
from segshield.defenses.fr import FrequencyRefinement
from segshield.models import build_model, save


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    stem = tmp_path_factory.mktemp("ckpt") / "m"
    save(build_model("small", width=4), stem)
    return str(stem)


COMMON = ["--data", "phantom-derm", "--size", "16", "--limit", "4", "--attack", "asma:steps=2"]


def test_tune_writes_contract_json_plot_and_cache_and_resumes(checkpoint, tmp_path, capsys):
    out = tmp_path / "table.json"
    argv = ["tune", "--model", checkpoint, *COMMON, "--budget", "5", "--jpeg", "75", "-o", str(out)]
    code = main(argv)
    assert code in (0, 1)
    data = json.loads(out.read_text())
    assert set(data["heldout"]) >= {"paper", "tuned", "identity", "jpeg:q=75"}
    for row in ("paper", "tuned"):
        assert {"benign_loss", "recovered_dice"} <= set(data["heldout"][row])
    assert data["seed"] == 0 and data["config"]["data"] == "phantom-derm"
    assert code == (0 if data["feasible"] else 1)
    fr = FrequencyRefinement.from_file(out)
    scales = data["layout"]["channel_scales"]
    assert fr.table.shape == ((3, 8, 8) if scales else (8, 8))
    for c, s in enumerate(scales):  # each channel's table is the first one times s / s0
        assert torch.allclose(
            fr.table[c] / fr.table[0], torch.full((8, 8), s / scales[0], dtype=torch.float64)
        )
    assert Image.open(tmp_path / "table.pareto.png").format == "PNG"
    assert (tmp_path / "table.pareto.svg").read_text().startswith("<svg")
    lines = (tmp_path / "table.cache.jsonl").read_text().splitlines()
    assert len(lines) == 1 + data["evaluations"]["new"]
    assert (tmp_path / "table.cache.val-adv.safetensors").is_file()
    assert (tmp_path / "table.cache.heldout-adv.safetensors").is_file()
    printed = capsys.readouterr().out
    assert "tuned" in printed and "tuned - paper, per image" in printed
    main([*argv, "--resume"])
    again = json.loads(out.read_text())
    assert again["evaluations"] == {"new": 0, "cached": data["evaluations"]["new"]}
    assert again["table"] == data["table"]


def test_tune_channel_scales_one_keeps_a_shared_table(checkpoint, tmp_path):
    out = tmp_path / "t.json"
    argv = ["tune", "--model", checkpoint, *COMMON, "--budget", "6", "--jpeg", ""]
    main([*argv, "--channel-scales", "1", "-o", str(out)])
    data = json.loads(out.read_text())
    assert data["config"]["space"]["channel_scales"] == [1.0]
    layouts = [data["layout"]] + [p["layout"] for p in data["pareto"] if p["kind"] == "front"]
    assert all(lay["channel_scales"] == [] for lay in layouts)
    assert FrequencyRefinement.from_file(out).table.shape == (8, 8)


def test_tune_heldout_all_scores_every_table_and_prints_the_count(checkpoint, tmp_path, capsys):
    out = tmp_path / "t.json"
    argv = ["tune", "--model", checkpoint, *COMMON, "--budget", "4", "--jpeg", ""]
    main([*argv, "--heldout-all", "-o", str(out)])
    data = json.loads(out.read_text())
    tables = [p for p in data["pareto"] if p["kind"] in ("front", "scored")]
    assert data["config"]["heldout_all"] and len(tables) == data["evaluations"]["new"] == 4
    printed = capsys.readouterr().out
    assert "held-out: " in printed and "of 3 other tables scored there" in printed
    assert "--heldout-all scores every table" not in printed


def test_tune_divides_one_split_into_disjoint_halves(checkpoint, tmp_path):
    out = tmp_path / "t.json"
    argv = ["tune", "--model", checkpoint, *COMMON, "--budget", "2", "--jpeg", ""]
    main([*argv, "--heldout-split", "val", "-o", str(out)])
    data = json.loads(out.read_text())
    assert data["config"]["n_val"] == 2 and data["config"]["n_heldout"] == 2


def test_tune_paper_bound_is_recorded_with_its_value(checkpoint, tmp_path, capsys):
    out = tmp_path / "t.json"
    argv = ["tune", "--model", checkpoint, *COMMON, "--budget", "3", "--jpeg", ""]
    main([*argv, "--max-benign-loss", "paper", "--n", "60", "-o", str(out)])
    data = json.loads(out.read_text())
    assert data["config"]["n"] == 60 and data["config"]["n_val"] == 4
    # --n reaches the phantom generator: 6 phantoms leave one validation image.
    # A failure in the work is one line on stderr and exit 1 (no traceback).
    capsys.readouterr()
    assert main([*argv, "--n", "6", "-o", str(tmp_path / "u.json")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("segshield tune: error: ") and "has 1 item" in err
    assert err.count("\n") == 1
    with pytest.raises(ValueError, match="has 1 item"):  # --debug: the exception itself
        main(["--debug", *argv, "--n", "6", "-o", str(tmp_path / "u.json")])
    assert data["config"]["max_benign_loss"] == "paper"
    paper = data["validation"]["paper"]["benign_loss"]
    assert data["config"]["benign_loss_bound"] == pytest.approx(paper)
    assert data["validation"]["tuned"]["benign_loss"] <= paper + 1e-12


def test_analyze_writes_json_heatmaps_and_html(checkpoint, tmp_path):
    out = tmp_path / "an"
    assert main(["analyze", "--model", checkpoint, *COMMON, "--step", "20", "-o", str(out)]) == 0
    data = json.loads((out / "analysis.json").read_text())
    assert data["step"] == 20 and data["n_images"] == 4
    assert len(data["benign_drop"]) == 8 and len(data["clean_energy"]) == 3  # RGB phantoms
    pngs = sorted(p.name for p in (out / "heatmaps").glob("*.png"))
    assert len(pngs) == 6
    assert (out / "analysis.html").read_text().startswith("<section")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--max-benign-loss", "2"], "--max-benign-loss"),
        (["--max-benign-loss", "papers"], "or one of ['paper']"),
        (["--max-benign-loss", "nan"], "--max-benign-loss"),
        (["--benign-se", "-0.5"], "--benign-se"),
        (["--n", "1"], "--n"),
        (["--data", "isic:/data/isic", "--n", "50"], "--n: only for phantom data"),
        (["--budget", "0"], "--budget"),
        (["--jpeg", "50,x"], "--jpeg"),
        (["--jpeg", "0"], "--jpeg"),
        (["--attack", "nope"], "unknown name"),
        (["--limit", "1"], "--limit"),
        (["--channel-scales", "1,x"], "--channel-scales: expected comma-separated numbers"),
        (["--channel-scales", "0,1"], "--channel-scales"),
        (["--channel-scales", ""], "--channel-scales: expected at least one factor"),
        (["--device", "tpu"], "--device: expected auto, cpu, cuda or cuda:N"),
        (["--space", "lab"], "--space: expected one of 'rgb', 'ycbcr'"),
        (["--space", ","], "--space: expected one or more of"),
        (["--subsample", "422"], "--subsample: expected one of '444', '420'"),
        (["--chroma-scales", "0"], "--chroma-scales"),
    ],
)
def test_tune_validate_rejects_bad_arguments(checkpoint, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "tune",
                "--model",
                checkpoint,
                "--data",
                "phantom-derm",
                "-o",
                str(tmp_path / "t.json"),
                *extra,
            ]
        )
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_tune_validate_rejects_missing_model_and_bad_output(checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(
            [
                "tune",
                "--model",
                str(tmp_path / "none"),
                "--data",
                "phantom-derm",
                "-o",
                str(tmp_path / "t.json"),
            ]
        )
    assert "--model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(
            ["tune", "--model", checkpoint, "--data", "phantom-derm", "-o", str(tmp_path / "t.txt")]
        )
    assert "--output" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit):
        main(
            [
                "analyze",
                "--model",
                checkpoint,
                "--data",
                "phantom-derm",
                "-o",
                str(tmp_path / "file"),
            ]
        )
    assert "--output" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(
            [
                "analyze",
                "--model",
                checkpoint,
                "--data",
                "phantom-derm",
                "--step",
                "0",
                "-o",
                str(tmp_path / "o"),
            ]
        )
    assert "--step" in capsys.readouterr().err
