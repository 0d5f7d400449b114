"""Robustness curves: families, points, the figure, the report section and the CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from segshield.cli.main import main
from segshield.evaluation import ResultStore, render_report
from segshield.evaluation.config import EvalConfig
from segshield.evaluation.curves import CURVE_KEYS, attack_families, curve_points
from segshield.evaluation.harness import run_evaluation
from segshield.evaluation.summary import summarize
from segshield.plotting.curves import curves_figure


class _Ramp(torch.utils.data.Dataset):
    """Two 16x16 grey images holding every 8-bit level once; ground truth = level >= 128."""

    regions = {"fg": (1,)}
    num_classes = 2
    class_names = ("bg", "fg")

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> dict:
        levels = torch.arange(256).view(16, 16)
        levels = levels if i == 0 else levels.flip(0)
        return {"image": (levels / 255.0).view(1, 16, 16), "mask": (levels >= 128).long(),
                "name": f"ramp{i}"}  # fmt: skip


def _threshold_model() -> nn.Module:
    """K = 1 sigmoid: foreground where the grey level is above 0.5 (logit 20 * (x - 0.5))."""
    model = nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        model.weight.fill_(20.0)
        model.bias.fill_(-10.0)
    return model.eval()


EPS = (1, 2, 4, 8, 16)


@pytest.fixture(scope="module")
def ramp_results(tmp_path_factory):
    """PGD targeted at an all-foreground mask over an eps sweep, plain and adaptive."""
    out = tmp_path_factory.mktemp("ramp")
    cfg = EvalConfig(
        models=["ramp-model"],
        datasets=["ramp"],
        attacks=["pgd:eps={1,2,4,8,16}/255,steps=5", "asma:steps=2"],
        adaptive=["pgd:eps={1,2,4,8,16}/255,steps=5"],
        defenses=["median:k=3", "none"],
        target="full",
        batch_size=2,
        examples=0,
        downstream=False,
    )
    store = run_evaluation(cfg, out, models={"ramp-model": _threshold_model()},
                           datasets={"ramp": _Ramp()})  # fmt: skip
    store.close()
    return out


def test_undefended_target_iou_grows_with_eps_as_known(ramp_results):
    """A pixel of level k turns foreground iff k + e >= 128 (8-bit round trip), so the
    target IoU with the all-foreground mask is (128 + e) / 256 at eps = e/255."""
    with ResultStore(ramp_results, readonly=True) as store:
        points = curve_points(summarize(store.rows()))
    plain = [p for p in points if p["defense"] == "none" and not p["adaptive"]]
    assert [p["attack"] for p in plain] == [f"pgd:eps={e}/255,steps=5" for e in EPS]
    ious = [p["attack_target_iou"] for p in plain]
    assert all(b >= a for a, b in zip(ious, ious[1:], strict=False))
    assert ious == pytest.approx([(128 + e) / 256 for e in EPS], abs=1e-9)
    assert [p["linf"] for p in plain] == pytest.approx([e / 255 for e in EPS], abs=1e-6)
    # adaptive through "none" is the same attack on the same model
    same = [p for p in points if p["defense"] == "none" and p["adaptive"]]
    assert [p["attack_target_iou"] for p in same] == pytest.approx(ious)


def test_target_iou_after_the_defence_is_the_mean_of_the_stored_rows(ramp_results):
    """recovered_target_iou: per point, the plain mean of the stored per-sample values; for
    no defence it equals the attack's own target IoU."""
    with ResultStore(ramp_results, readonly=True) as store:
        rows = store.rows()
    points = curve_points(summarize(rows))
    for p in points:
        own = [
            r["recovered_target_iou"]
            for r in rows
            if (r["attack"], r["defense"], bool(r["adaptive"]))
            == (p["attack"], p["defense"], p["adaptive"])
        ]
        assert len(own) == 2 and p["recovered_target_iou"] == pytest.approx(sum(own) / 2)
        if p["defense"] == "none":
            assert p["recovered_target_iou"] == pytest.approx(p["attack_target_iou"])


def test_curve_points_have_the_documented_keys_and_families(ramp_results):
    with ResultStore(ramp_results, readonly=True) as store:
        points = curve_points(summarize(store.rows()))
    assert points and all(tuple(p) == CURVE_KEYS for p in points)
    assert {p["family"] for p in points} == {"pgd:eps=*,steps=5"}  # asma alone: no curve
    groups = {(p["defense"], p["adaptive"]) for p in points}
    assert groups == {("median:k=3", False), ("median:k=3", True), ("none", False), ("none", True)}
    assert all(isinstance(p["adaptive"], bool) and p["n"] == 2 for p in points)
    for d, ad in groups:
        xs = [p["linf"] for p in points if (p["defense"], p["adaptive"]) == (d, ad)]
        assert xs == sorted(xs) and len(xs) == len(EPS)


def test_families_star_only_the_keys_that_vary():
    fam = attack_families(
        [
            "asma:tau=1e-7,beta=1e-6,steps=9",
            "asma:tau=10e-7,beta=10e-6,steps=9",
            "pgd:eps=1/255",
            "pgd:eps=1/255,steps=3",
            "none",
        ]
    )
    assert fam["asma:tau=10e-7,beta=10e-6,steps=9"] == "asma:tau=*,beta=*,steps=9"
    assert fam["pgd:eps=1/255"] == "pgd:eps=1/255"  # other keys: another family
    assert fam["none"] == "none"


def test_curve_points_skip_none_worst_case_and_keep_nan():
    base = dict(model="m", dataset="d", adaptive=0, defense="fr", n=3)
    rows = [
        {
            **base,
            "attack": "pgd:eps=2/255",
            "linf": 0.008,
            "l2": 1.0,
            "recovered_dice": 0.5,
            "attack_target_iou": 0.6,
            "recovered_target_iou": 0.2,
        },
        {**base, "attack": "pgd:eps=1/255", "linf": 0.004, "l2": 0.5, "recovered_dice": 0.7},
        {**base, "attack": "none", "linf": math.nan},
        {**base, "attack": "worst-case", "linf": 0.008},
    ]
    points = curve_points(rows)
    assert [p["attack"] for p in points] == ["pgd:eps=1/255", "pgd:eps=2/255"]
    assert math.isnan(points[0]["attack_target_iou"])  # untargeted: no target IoU
    assert math.isnan(points[0]["recovered_target_iou"])
    assert (points[1]["attack_target_iou"], points[1]["recovered_target_iou"]) == (0.6, 0.2)
    assert points[0]["adaptive"] is False


def test_curves_figure_draws_four_panels_dashed_when_adaptive():
    def line(d, ad):
        return dict(defense=d, adaptive=ad, linf=[0.01, 0.02, math.nan], l2=[1.0, 2.0, 3.0],
                    recovered_dice=[0.9, 0.5, 0.2],
                    recovered_target_iou=[0.1, 0.4, 0.8])  # fmt: skip

    fig = curves_figure("m / d / pgd:eps=*", [line("fr", False), line("fr", True)])
    assert len(fig.axes) == 4
    styles = [ln.get_linestyle() for ln in fig.axes[0].lines]
    assert styles == ["-", "--"]
    assert len(fig.axes[0].lines[0].get_xdata()) == 2  # the NaN point left out
    assert len(fig.axes[2].lines[0].get_xdata()) == 3  # L2 panel keeps it
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["fr", "fr (adaptive)"]
    assert list(fig.axes[1].lines[0].get_ydata()) == [0.1, 0.4]  # target IoU after FR
    assert fig.axes[1].get_ylabel() == "target IoU after the defence"
    under = curves_figure("t", [line("fr", False), line("none", False)]).axes[0].lines
    assert under[1].get_zorder() < under[0].get_zorder()  # no defence beneath FR
    with pytest.raises(ValueError, match="one length"):
        curves_figure("t", [dict(line("fr", False), l2=[1.0])])


def test_report_has_the_curve_section_and_figure_files(ramp_results, tmp_path):
    path = render_report(ramp_results, tmp_path / "report.html")
    html = path.read_text(encoding="utf-8")
    assert "<h2>Robustness curves</h2>" in html
    names = sorted(p.name for p in (tmp_path / "report_figures").iterdir())
    assert [n for n in names if n.startswith("curves_")] == [
        "curves_ramp-model_ramp_pgd_eps_steps_5.pdf",
        "curves_ramp-model_ramp_pgd_eps_steps_5.png",
    ]


def test_report_without_a_sweep_has_no_curve_section(tmp_path):
    store = ResultStore(tmp_path / "r")
    store.add([dict(model="m", dataset="d", attack="asma", adaptive=0, defense="none",
                    sample="s", clean_dice=0.9, benign_dice=0.9, recovered_dice=0.5)])  # fmt: skip
    html = render_report(store, tmp_path / "r.html").read_text(encoding="utf-8")
    store.close()
    assert "Robustness curves" not in html


def test_cli_report_json_curves(ramp_results, capsys):
    assert main(["report", str(ramp_results), "--format", "json", "--curves"]) == 0
    points = json.loads(capsys.readouterr().out)
    with ResultStore(ramp_results, readonly=True) as store:
        expected = curve_points(summarize(store.rows()))
    assert len(points) == len(expected) == 4 * len(EPS)
    assert [tuple(p) for p in points] == [CURVE_KEYS] * len(points)
    for key in ("attack_target_iou", "recovered_target_iou"):
        assert [p[key] for p in points] == pytest.approx([p[key] for p in expected])
    # --format json alone: the summary rows, as before
    assert main(["report", str(ramp_results), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["attack"] for r in rows} >= {"asma:steps=2", "pgd:eps=1/255,steps=5"}
    assert "clean_dice" in rows[0]


def test_cli_curves_needs_json(ramp_results, capsys):
    with pytest.raises(SystemExit) as info:
        main(["report", str(ramp_results), "--format", "md", "--curves"])
    assert info.value.code == 2
    assert "--curves" in capsys.readouterr().err
