"""Attack sweeps: the expansion, its errors, and sweeps in the evaluation settings."""

from __future__ import annotations

import json

import pytest

from segshield.attacks import get_attack
from segshield.attacks.sweep import expand_sweep, expand_sweeps, is_sweep
from segshield.cli.main import main
from segshield.evaluation.config import EvalConfig, load_config


def test_one_group_is_one_spec_per_value_with_the_text_around_it():
    out = expand_sweep(" pgd:eps={1, 2,4,8,16}/255,steps=10 ")
    assert out == [f"pgd:eps={e}/255,steps=10" for e in (1, 2, 4, 8, 16)]
    assert [get_attack(s).eps for s in out] == pytest.approx([e / 255 for e in (1, 2, 4, 8, 16)])


def test_groups_in_one_spec_are_zipped_for_the_asma_scales():
    out = expand_sweep("asma:tau={1,10,100,1000}e-7,beta={1,10,100,1000}e-6,steps=3")
    assert len(out) == 4
    attacks = [get_attack(s) for s in out]
    assert [a.tau for a in attacks] == pytest.approx([1e-7, 1e-6, 1e-5, 1e-4])
    assert [a.beta for a in attacks] == pytest.approx([1e-6, 1e-5, 1e-4, 1e-3])
    assert {a.steps for a in attacks} == {3}


def test_a_spec_without_braces_is_itself():
    assert expand_sweep("asma:steps=5") == ["asma:steps=5"]
    assert not is_sweep("asma:steps=5") and is_sweep("pgd:eps={1}/255")
    assert expand_sweep("pgd:eps={8}/255") == ["pgd:eps=8/255"]


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("pgd:eps={1,2/255", "never closed"),
        ("pgd:eps=1,2}/255", "closes no group"),
        ("pgd:eps={1,{2}}/255", "nested"),
        ("pgd:eps={}/255", "empty group"),
        ("pgd:eps={ , }/255", "empty group"),
        ("pgd:eps={1,,2}/255", "empty item"),
        ("asma:tau={1,10}e-7,beta={1,10,100}e-6", "same number of values"),
        ("pgd:eps={1,1}/255", "more than once"),
    ],
)
def test_bad_sweeps_say_what_is_wrong(spec, words):
    with pytest.raises(ValueError, match=words) as info:
        expand_sweep(spec)
    assert spec in str(info.value)


def test_mismatched_lengths_name_both_groups():
    with pytest.raises(ValueError, match=r"\{1,10\} has 2, \{1,10,100\} has 3"):
        expand_sweep("asma:tau={1,10}e-7,beta={1,10,100}e-6")


def test_expand_sweeps_keeps_order_and_names_the_setting():
    assert expand_sweeps(["asma", "pgd:eps={4,8}/255", "pgd:eps=8/255", "none"]) == [
        "asma",
        "pgd:eps=4/255",
        "pgd:eps=8/255",
        "none",
    ]
    with pytest.raises(ValueError, match="^adaptive: attack sweep"):
        expand_sweeps(["pgd:eps={}/255"], "adaptive")
    with pytest.raises(TypeError, match="spec string"):
        expand_sweep(3)


def test_evalconfig_expands_attacks_and_adaptive():
    cfg = EvalConfig(
        models=["m"],
        datasets=["phantom-derm"],
        attacks=["none", "pgd:eps={1,2}/255"],
        adaptive="pgd:eps={4,8}/255,steps=2",
    )
    assert cfg.attacks == ["none", "pgd:eps=1/255", "pgd:eps=2/255"]
    assert cfg.adaptive == ["pgd:eps=4/255,steps=2", "pgd:eps=8/255,steps=2"]
    # expansion is idempotent, so the stored config rebuilds the same run (resume)
    again = EvalConfig.from_dict(cfg.to_dict())
    assert again.digest() == cfg.digest()
    with pytest.raises(ValueError, match="^attacks: attack sweep"):
        EvalConfig(models=["m"], datasets=["phantom-derm"], attacks=["pgd:eps={1,2/255"])


def test_config_file_takes_sweeps(tmp_path):
    path = tmp_path / "exp.json"
    path.write_text(
        json.dumps(
            {
                "models": ["m"],
                "datasets": ["phantom-derm"],
                "attacks": ["asma:tau={1,10}e-7,beta={1,10}e-6"],
            }
        )
    )
    assert load_config(path).attacks == ["asma:tau=1e-7,beta=1e-6", "asma:tau=10e-7,beta=10e-6"]


def _usage_error(command: str, spec: str, tmp_path) -> None:
    """Run a command with ``--attack spec``; it must stop with a usage error (exit 2)."""
    argv = [command, "--model", str(tmp_path / "m"), "--data", "phantom-derm"]
    with pytest.raises(SystemExit) as info:
        main([*argv, "--attack", spec, "-o", str(tmp_path / "out")])
    assert info.value.code == 2
    assert not (tmp_path / "out").exists()


def test_cli_errors_on_a_bad_sweep_before_work(tmp_path, capsys):
    _usage_error("evaluate", "pgd:eps={1,2}/255,alpha={1,2,3}/255", tmp_path)
    assert "same number of values" in capsys.readouterr().err


def test_segshield_attack_refuses_a_sweep(tmp_path, capsys):
    _usage_error("attack", "pgd:eps={1,2}/255", tmp_path)
    assert "segshield evaluate" in capsys.readouterr().err
