"""Worst case per sample over the attacks of a run, and attack suites (docs/ALGORITHMS.md §5)."""

from __future__ import annotations

import hashlib
import json
import math
import re

import pytest
import torch

from segshield.cli.main import main
from segshield.evaluation import harness
from segshield.evaluation.config import EvalConfig
from segshield.evaluation.harness import run_evaluation
from segshield.evaluation.report import report_html
from segshield.evaluation.store import KEY_COLUMNS, ResultStore
from segshield.evaluation.suites import SUITES, check_suite, suite_specs
from segshield.evaluation.worst_case import WORST_CASE, worst_case_rows

NAN = math.nan
ATTACKS = ["pgd:steps=2", "fgsm", "asma:steps=3"]


def _row(attack, value, sample="s", adaptive=False, defense="fr", **extra):
    row = dict(model="m", dataset="d", attack=attack, adaptive=adaptive, defense=defense)
    return {**row, "sample": sample, "recovered_dice": value, **extra}


# -- the pure function --------------------------------------------------------------


def test_winner_is_the_lowest_and_its_columns_are_copied():
    rows = [
        _row("pgd", 0.5, linf=0.03),
        _row("asma", 0.1, linf=0.2),
        _row("pgd", 0.3, adaptive=True, linf=0.03),
        _row("asma", 0.0, model="other"),  # another model: ignored
        _row("none", 0.0),  # not an entrant
    ]
    entrants = [("pgd", False), ("asma", False), ("pgd", True)]
    (w,) = worst_case_rows(rows, entrants, "m", "d")
    assert (w["attack"], w["adaptive"], w["worst_attack"], w["worst_adaptive"]) == (
        WORST_CASE,
        1,
        "asma",
        0.0,
    )
    assert (w["recovered_dice"], w["linf"]) == (0.1, 0.2)
    (w,) = worst_case_rows(rows[:1] + rows[2:3], [("pgd", False), ("pgd", True)], "m", "d")
    assert (w["worst_attack"], w["worst_adaptive"], w["recovered_dice"]) == ("pgd", 1.0, 0.3)


def test_ties_go_to_the_first_entrant_whatever_the_row_order():
    rows = [_row("pgd", 0.2), _row("fgsm", 0.2), _row("asma", 0.4)]
    for order in (rows, rows[::-1]):
        (w,) = worst_case_rows(order, [("fgsm", False), ("pgd", False), ("asma", False)], "m", "d")
        assert w["worst_attack"] == "fgsm"
        (w,) = worst_case_rows(order, [("pgd", False), ("fgsm", False), ("asma", False)], "m", "d")
        assert w["worst_attack"] == "pgd"


def test_nan_never_wins_and_all_nan_stays_nan():
    rows = [_row("pgd", NAN, "a"), _row("fgsm", 0.9, "a"), _row("pgd", NAN, "b")]
    rows.append(_row("fgsm", NAN, "b"))
    by_sample = {
        w["sample"]: w for w in worst_case_rows(rows, [("pgd", False), ("fgsm", False)], "m", "d")
    }
    assert (by_sample["a"]["worst_attack"], by_sample["a"]["recovered_dice"]) == ("fgsm", 0.9)
    assert by_sample["b"]["worst_attack"] is None
    assert math.isnan(by_sample["b"]["recovered_dice"])
    assert math.isnan(by_sample["b"]["worst_adaptive"])


def test_missing_attack_row_is_an_error():
    with pytest.raises(ValueError, match=r"m / d / fr / s lacks the row\(s\) of fgsm"):
        worst_case_rows([_row("pgd", 0.2)], [("pgd", False), ("fgsm", False)], "m", "d")
    with pytest.raises(ValueError, match="at least one attack"):
        worst_case_rows([], [], "m", "d")


# -- a tiny phantom run ---------------------------------------------------------------


class RedModel(torch.nn.Module):
    """Lesion where the red channel is dark (phantom-derm lesions: red ~0.5, skin ~0.8)."""

    num_classes = 1
    config = {"architecture": "red", "input_size": 16}

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(20.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w * (0.65 - x[:, :1])


@pytest.fixture(scope="module")
def tiny():
    return RedModel().eval()


def _config(**kw) -> EvalConfig:
    base = dict(
        models=["tiny"],
        datasets=["phantom-derm"],
        attacks=ATTACKS,
        defenses=["fr", "none"],
        size=16,
        n=20,
        split="all",
        limit=3,
        batch_size=2,
        examples=0,
        worst_case=True,
    )
    base.update(kw)
    return EvalConfig(**base)


def _by_key(rows):
    return {tuple(r[c] for c in KEY_COLUMNS): r for r in rows}


def _check_worst(rows, attacks, defenses=("fr", "none"), samples=3):
    """Property: worst <= every attack's value; the named attack has that value."""
    worst = [r for r in rows if r["attack"] == WORST_CASE]
    assert len(worst) == len(defenses) * samples
    attack_rows = {(r["attack"], r["defense"], r["sample"]): r for r in rows}
    for w in worst:
        values = [attack_rows[(a, w["defense"], w["sample"])]["recovered_dice"] for a in attacks]
        finite = [v for v in values if not math.isnan(v)]
        if not finite:
            assert math.isnan(w["recovered_dice"]) and w["worst_attack"] is None
            continue
        assert all(w["recovered_dice"] <= v for v in finite)
        won = attack_rows[(w["worst_attack"], w["defense"], w["sample"])]
        assert won["recovered_dice"] == w["recovered_dice"]
        assert attacks.index(w["worst_attack"]) == min(
            i for i, v in enumerate(values) if v == w["recovered_dice"]
        )


def test_phantom_run_worst_case_rows_json_and_html(tmp_path, tiny, capsys):
    out = tmp_path / "r"
    store = run_evaluation(_config(), out, models={"tiny": tiny})
    try:
        rows = store.rows()
        _check_worst(rows, ATTACKS)
        html = report_html(store)
    finally:
        store.close()
    first_h2 = html.index("<h2>")
    assert html[first_h2:].startswith("<h2>Worst case per image</h2>")
    assert html.index("Worst case per image") < html.index("What was run")
    section = html[first_h2 : html.index("What was run")]
    assert "asma:steps=3, fgsm, pgd:steps=2 (on the bare model)" in section
    assert "adaptive (through each defence): none" in section
    assert main(["-q", "report", str(out), "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    worst = [r for r in listed if r["attack"] == WORST_CASE]
    assert sorted(r["defense"] for r in worst) == ["fr", "none"]
    for r in worst:
        means = [
            s["recovered_dice"]
            for s in listed
            if s["defense"] == r["defense"] and s["attack"] in ATTACKS
        ]
        assert r["n"] == 3 and r["recovered_dice"] <= min(means) + 1e-12


def test_adaptive_attacks_enter_the_worst_case(tmp_path, tiny):
    cfg = _config(attacks=["fgsm"], adaptive=["pgd:steps=2"], defenses=["bitdepth"])
    with run_evaluation(cfg, tmp_path, models={"tiny": tiny}) as store:
        rows = store.rows()
        html = report_html(store)
    worst = [r for r in rows if r["attack"] == WORST_CASE]
    assert worst and all(r["adaptive"] for r in worst)
    attack_rows = {(r["attack"], r["adaptive"], r["defense"], r["sample"]): r for r in rows}
    for w in worst:
        pair = [
            attack_rows[("fgsm", False, w["defense"], w["sample"])]["recovered_dice"],
            attack_rows[("pgd:steps=2", True, w["defense"], w["sample"])]["recovered_dice"],
        ]
        assert w["recovered_dice"] == min(v for v in pair if not math.isnan(v))
        assert w["worst_adaptive"] == float(
            w["worst_attack"] == "pgd:steps=2" and pair[1] < pair[0]
        )
    assert "adaptive (through each defence): pgd:steps=2" in html


def test_interrupted_runs_resume_without_duplicates(tmp_path, tiny, monkeypatch):
    out = tmp_path / "r"
    real = harness._attack_group
    calls = []

    def dies_on_third(*args, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(harness, "_attack_group", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        run_evaluation(_config(), out, models={"tiny": tiny})
    monkeypatch.setattr(harness, "_attack_group", real)
    with ResultStore(out, readonly=True) as store:
        assert 0 < len(store) < 3 * 2 * 3 and not any(
            r["attack"] == WORST_CASE for r in store.rows()
        )

    def fails(*args, **kw):  # the attack rows finish, the worst case does not
        raise KeyboardInterrupt

    monkeypatch.setattr(harness, "worst_case_rows", fails)
    with pytest.raises(KeyboardInterrupt):
        run_evaluation(_config(), out, models={"tiny": tiny})
    with ResultStore(out, readonly=True) as store:
        assert len(store) == 3 * 2 * 3
    monkeypatch.undo()
    run_evaluation(_config(), out, models={"tiny": tiny}).close()
    store = run_evaluation(_config(), out, models={"tiny": tiny})  # again: nothing added
    try:
        rows = store.rows()
    finally:
        store.close()
    assert len(rows) == len(_by_key(rows)) == 3 * 2 * 3 + 2 * 3
    _check_worst(rows, ATTACKS)
    # the stored worst case is the one derived from the stored attack rows
    again = worst_case_rows(rows, [(a, False) for a in ATTACKS], "tiny", "phantom-derm")
    stored = _by_key(r for r in rows if r["attack"] == WORST_CASE)
    for w in again:
        s = stored[tuple(w[c] for c in KEY_COLUMNS)]
        assert (s["worst_attack"], s["recovered_dice"]) == (w["worst_attack"], w["recovered_dice"])


def test_folder_without_the_column_opens_and_resumes(tmp_path, tiny):
    """A folder written before ``worst_case``/``suite``/``eps`` (and the attack speed
    settings) existed resumes."""
    out = tmp_path / "old"
    cfg = _config(worst_case=False, attacks=["fgsm"])
    run_evaluation(cfg, out, models={"tiny": tiny}).close()
    manifest = json.loads((out / "manifest.json").read_text())
    later = ("worst_case", "suite", "eps", "subset", "attack_precision", "channels_last", "compile")
    old = {k: v for k, v in manifest["config"].items() if k not in later}
    manifest["config"] = old  # as the older version wrote it, with its digest
    text = json.dumps(old, sort_keys=True)
    manifest["config_digest"] = hashlib.sha256(text.encode()).hexdigest()[:16]
    (out / "manifest.json").write_text(json.dumps(manifest))
    store = run_evaluation(cfg, out, models={"tiny": tiny})
    try:
        assert "worst_attack" not in store.metric_columns()
        assert len(store) == 6 and len(store.manifest()["resumed"]) == 1
        # the column is added when a worst-case row first needs it; old rows read None
        store.add([dict(_row(WORST_CASE, 0.1), worst_attack="fgsm:eps=8/255", worst_adaptive=0.0)])
        rows = store.rows()
    finally:
        store.close()
    assert [r["worst_attack"] for r in rows] == [None] * 6 + ["fgsm:eps=8/255"]
    assert rows[-1]["worst_adaptive"] == 0.0


# -- configuration, CLI and suites --------------------------------------------------------


def test_config_worst_case_and_suite_settings(tmp_path):
    base = dict(models=["m"], datasets=["phantom-derm"])
    assert EvalConfig(**base).attacks == ["asma"]
    plain = EvalConfig(**base)
    assert plain.digest() == EvalConfig(**base, worst_case=False).digest()
    assert plain.digest() != EvalConfig(**base, worst_case=True).digest()
    cfg = EvalConfig(**base, suite="standard", attacks=["fgsm", "asma"], adaptive=["pgd"])
    attacks, adaptive = suite_specs("standard")
    assert cfg.attacks == [*attacks, "fgsm"] and cfg.adaptive == [*adaptive, "pgd"]
    assert cfg.worst_case and cfg.eps == "8/255"
    assert EvalConfig.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()
    with pytest.raises(ValueError, match="eps: sets the budget of a suite"):
        EvalConfig(**base, eps="4/255")
    with pytest.raises(ValueError, match="eps: expected a positive number or fraction"):
        EvalConfig(**base, suite="standard", eps="big")
    with pytest.raises(ValueError, match="suite: expected one of 'standard', got 'huge'"):
        EvalConfig(**base, suite="huge")
    with pytest.raises(ValueError, match="worst_case: needs at least one attack"):
        EvalConfig(**base, attacks=["none"], worst_case=True)
    with pytest.raises(TypeError, match="worst_case: expected true or false"):
        EvalConfig(**base, worst_case="yes")
    path = tmp_path / "exp.json"
    path.write_text(json.dumps({**base, "worst_case": True}))
    from segshield.evaluation.config import load_config

    assert load_config(path).worst_case is True


def test_suite_specs_are_well_formed_and_the_registered_ones_build():
    from segshield.attacks import get_attack, list_attacks, parse_spec

    for name in SUITES:
        attacks, adaptive = suite_specs(name, "4/255")
        assert len(set(attacks + adaptive)) == len(attacks + adaptive)
        for spec in attacks + adaptive:
            kind, params = parse_spec(spec)
            assert re.fullmatch(r"[a-z]+", kind)
            if kind != "asma":
                assert params["eps"] == pytest.approx(4 / 255)
            if kind in list_attacks():
                get_attack(spec)
    names = [parse_spec(s) for s in sum(suite_specs("standard"), [])]
    assert [n for n, _ in names] == ["asma", "pgd", "apgd", "apgd", "cospgd", "dctpgd"]
    assert [p.get("loss") for n, p in names if n == "apgd"] == ["ce", "bmce"]


def test_full_standard_suite_builds():
    check_suite("standard")
    check_suite("standard", "4/255")


def test_unregistered_suite_attack_is_named(monkeypatch):
    from segshield.evaluation import suites

    monkeypatch.setitem(suites._SUITES, "standard", (("nosuch:eps={eps}",), ()))
    with pytest.raises(ValueError, match=r"suite 'standard': attack 'nosuch:.*unknown name"):
        check_suite("standard")


def test_cli_worst_case_and_suite_flags(tmp_path, capsys):
    import argparse

    from segshield.cli.evaluate import add_parser, config_from_args

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    common = ["evaluate", "--model", "m", "--data", "phantom-derm", "-o", str(tmp_path)]
    args = parser.parse_args([*common, "--worst-case", "--attack", "fgsm"])
    cfg = config_from_args(args)
    assert cfg.worst_case and cfg.attacks == ["fgsm"]
    cfg = config_from_args(parser.parse_args([*common, "--suite", "standard", "--eps", "4/255"]))
    assert cfg.worst_case and cfg.eps == "4/255" and cfg.attacks[1] == "pgd:eps=4/255,steps=50"
    with pytest.raises(SystemExit):
        parser.parse_args([*common, "--suite", "huge"])
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_an_attack_skipped_for_a_defence_does_not_enter_there():
    rows = [_row("pgd", 0.5, defense="none"), _row("pgd", 0.5), _row("dctpgd", 0.1, adaptive=True)]
    entrants = [("pgd", False), ("dctpgd", True)]
    with pytest.raises(ValueError, match="none / s lacks the row"):
        worst_case_rows(rows, entrants, "m", "d")
    skip = {("dctpgd", True, "none")}
    by_defence = {w["defense"]: w for w in worst_case_rows(rows, entrants, "m", "d", skip=skip)}
    assert (by_defence["none"]["worst_attack"], by_defence["none"]["recovered_dice"]) == (
        "pgd",
        0.5,
    )
    assert (by_defence["fr"]["worst_attack"], by_defence["fr"]["recovered_dice"]) == (
        "dctpgd",
        0.1,
    )


def test_dctpgd_runs_through_block_dct_defences_only(tmp_path, tiny, caplog):
    """DCT-PGD reads the defence's table: through none it cannot run and is skipped there
    (a warning), and the worst case of none is over the other attacks."""
    adaptive = "dctpgd:eps=8/255,steps=2"
    cfg = _config(attacks=["fgsm"], adaptive=[adaptive])
    with caplog.at_level("WARNING"), run_evaluation(cfg, tmp_path, models={"tiny": tiny}) as s:
        rows = s.rows()
    ran = {(r["attack"], r["defense"]) for r in rows}
    assert (adaptive, "fr") in ran and (adaptive, "none") not in ran
    assert f"{adaptive} cannot run through the defence none" in caplog.text
    worst = {(r["defense"], r["sample"]): r for r in rows if r["attack"] == WORST_CASE}
    assert len(worst) == 6
    assert {w["worst_attack"] for (d, _), w in worst.items() if d == "none"} == {"fgsm"}
