"""The parts of the FR table search: settings, objective, report file and deprecated names."""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, replace

import pytest
import torch

import segshield.tuning as tuning
import segshield.tuning.search as search_mod
from segshield.defenses.fr import FrequencyRefinement
from segshield.defenses.tables import PAPER_BANDS, PAPER_STEPS, band_table
from segshield.tuning import (
    PAPER_CANDIDATE,
    Candidate,
    SearchSpace,
    TuneConfig,
    TuneData,
    TuneResult,
    tune_table,
)
from segshield.tuning.objective import Feasibility, mean_se, paired_difference, upper_bound
from segshield.tuning.space import layout_band_table


class ThresholdModel(torch.nn.Module):
    def forward(self, x):
        return 20.0 * (x.mean(1, keepdim=True) - 0.5)


def _data(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 16, 16, generator=g)
    m = (x[:, 0] > 0.5).long()
    adv = (x + 0.2 * torch.sign(torch.randn(x.shape, generator=g))).clamp(0, 1)
    return x, m, adv


SMALL = SearchSpace(
    square_sizes=((1, 2), (2, 4)),
    zigzag_sizes=((3, 10),),
    pd_steps=(10.0, 30.0),
    ac_steps=(1.0, 5.0),
    gd_steps=(20.0, 60.0),
)


def _splits():
    vx, vm, va = _data(6, 0)
    hx, hm, ha = _data(6, 1)
    return TuneData(vx, vm, hx, hm, val_adversarial=va, heldout_adversarial=ha)


# -- settings ------------------------------------------------------------------------------


def test_config_defaults_and_space_none():
    c = TuneConfig(space=None)
    assert c.space == SearchSpace() and c.budget == 120 and c.pad == "edge"
    assert TuneConfig(budget=4.0).budget == 4 and isinstance(TuneConfig(budget=4.0).budget, int)


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"max_benign_loss": 1.5}, ValueError, "max_benign_loss"),
        ({"max_benign_loss": "jpeg"}, ValueError, "max_benign_loss.*paper"),
        ({"benign_se": -1}, ValueError, "benign_se"),
        ({"budget": 0}, ValueError, "budget"),
        ({"budget": 2.5}, TypeError, "budget"),
        ({"adaptive_top_k": 0}, ValueError, "adaptive_top_k"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"pad": "reflect"}, ValueError, "pad"),
        ({"jpeg_qualities": (0,)}, ValueError, "jpeg_qualities"),
        ({"space": SearchSpace(channel_scales=(1.0, 0.0))}, ValueError, "space.channel_scales"),
    ],
)
def test_config_rejects_bad_settings(kw, error, match):
    with pytest.raises(error, match=match):
        TuneConfig(**kw)


def test_data_checks_shapes_and_channels():
    x, m, adv = _data()
    with pytest.raises(ValueError, match="val_adversarial: expected shape"):
        TuneData(x, m, x, m, val_adversarial=adv[:3])
    with pytest.raises(ValueError, match="heldout_adversarial"):
        TuneData(x, m, x, m, heldout_adversarial=adv[:, :, :8])
    with pytest.raises(ValueError, match="heldout_images: expected 1 channels"):
        TuneData(x, m, x.expand(6, 3, 16, 16), m)
    with pytest.raises(ValueError, match="val_masks"):
        TuneData(x, m[:2], x, m)
    assert TuneData(x, m, x, m).channels == 1


def test_config_record_is_the_json_config():
    data = _splits()
    rec = TuneConfig(attack="fgsm", space=SMALL).record({"fg": (1,)}, data)
    assert rec["attack"] == "fgsm" and rec["regions"] == {"fg": [1]}
    assert rec["n_val"] == 6 and rec["n_heldout"] == 6 and rec["space"] == asdict(SMALL)
    assert TuneConfig(attack=lambda *a, **k: None).record({}, data)["attack"] == "function"


# -- objective -----------------------------------------------------------------------------


def test_mean_se_and_upper_bound_by_hand():
    v = torch.tensor([0.1, 0.3, float("nan"), 0.2], dtype=torch.float64)
    m, se, n = mean_se(v)
    want_se = float(torch.tensor([0.1, 0.3, 0.2], dtype=torch.float64).std()) / 3**0.5
    assert n == 3 and m == pytest.approx(0.2) and se == pytest.approx(want_se)
    assert upper_bound(v, 2.0) == pytest.approx(0.2 + 2 * want_se)
    assert mean_se(torch.tensor([float("nan")])) == (0.0, 0.0, 0)
    assert mean_se(torch.tensor([0.5])) == (0.5, 0.0, 1)
    d = paired_difference(torch.tensor([1.0, 0.5]), torch.tensor([0.5, 0.5]))
    assert d["n"] == 2 and d["mean"] == pytest.approx(0.25)


def _row(losses, rec, cand=PAPER_CANDIDATE):
    t = torch.tensor(losses, dtype=torch.float64)
    return {"candidate": cand, "benign_per_image": losses, "benign_loss": float(t.mean()),
            "recovered_dice": rec}  # fmt: skip


def test_feasibility_numbers_and_paper_rule():
    paper = _row([0.0, 0.02, 0.04], 0.5)
    plain = Feasibility.from_rule(0.03, 1.0, paper)
    assert not plain.paired and plain.bound == 0.03
    assert not plain.feasible(paper)  # 0.02 + 0.0115 > 0.03
    assert Feasibility.from_rule(0.03, 0.0, paper).feasible(_row([0.0, 0.02, 0.04], 0.5))
    paired = Feasibility.from_rule("paper", 1.0, paper)
    assert paired.paired and paired.bound == pytest.approx(0.02)
    same = _row([0.0, 0.02, 0.04], 0.6)
    assert paired.feasible(same) and same["benign_ucb"] == 0.0
    worse = _row([0.01, 0.03, 0.05], 0.9, replace(PAPER_CANDIDATE, gd=80.0))
    assert not paired.feasible(worse)
    # Feasible first, then the higher recovery (fresh rows: a row keeps its benign_ucb).
    paper = _row([0.0, 0.02, 0.04], 0.5)
    ranked = sorted([worse, paper, same], key=paired.rank_key)
    assert ranked[0] is same and ranked[-1] is worse


# -- space ---------------------------------------------------------------------------------


def test_paper_candidate_is_the_paper_table():
    assert (PAPER_CANDIDATE.pd_size, PAPER_CANDIDATE.ac_size) == PAPER_BANDS
    assert (PAPER_CANDIDATE.pd, PAPER_CANDIDATE.ac, PAPER_CANDIDATE.gd) == PAPER_STEPS
    t = PAPER_CANDIDATE.table()
    assert t.dtype == torch.float32 and torch.equal(t.double(), band_table())


def test_candidate_from_layout_round_trips_through_json():
    c = Candidate("zigzag", 3, 10, 20.0, 2.0, 40.0, (1.0, 4.0, 2.0))
    assert Candidate.from_layout(json.loads(json.dumps(asdict(c)))) == c
    assert Candidate.from_layout(asdict(PAPER_CANDIDATE)) == PAPER_CANDIDATE


# -- tune_table forms ----------------------------------------------------------------------


def test_keyword_form_is_deprecated_and_gives_the_same_result():
    data = _splits()
    new = tune_table(ThresholdModel(), data, TuneConfig(budget=6, jpeg_qualities=(), space=SMALL))
    with pytest.warns(DeprecationWarning, match="TuneData"):
        old = tune_table(ThresholdModel(), **vars(data), budget=6, jpeg_qualities=(), space=SMALL)
    assert old.candidate == new.candidate and old.heldout == new.heldout
    assert old.evaluations == new.evaluations and old.config == new.config


def test_tune_table_argument_errors():
    data = _splits()
    with pytest.raises(TypeError, match="not both"):
        tune_table(ThresholdModel(), data, budget=4)
    with pytest.raises(TypeError, match="data: expected a TuneData"):
        tune_table(ThresholdModel(), {"val_images": 1})
    with pytest.raises(TypeError, match="config: expected a TuneConfig"):
        tune_table(ThresholdModel(), data, {"budget": 4})
    with pytest.warns(DeprecationWarning), pytest.raises(TypeError, match="budgt"):
        tune_table(ThresholdModel(), **vars(data), budgt=4)


# -- report file ---------------------------------------------------------------------------


def test_result_to_file_is_an_fr_table_file_with_the_report(tmp_path):
    res = tune_table(ThresholdModel(), _splits(), TuneConfig(budget=4, jpeg_qualities=(75,)))
    assert isinstance(res, TuneResult)
    path = tmp_path / "t.json"
    res.to_file(path, data="phantom-derm", limit=None)
    data = json.loads(path.read_text())
    want = json.loads(json.dumps(res.to_dict()))
    for k in want:
        if k != "config":
            assert data[k] == want[k], k
    assert data["config"] == {**want["config"], "data": "phantom-derm", "limit": None}
    fr = FrequencyRefinement.from_file(path)
    assert torch.equal(fr.table, res.table.double()) and fr.pad == "edge"
    assert torch.equal(res.defense().table, fr.table)


def test_fr_to_file_extra_entries_may_not_replace_settings(tmp_path):
    fr = FrequencyRefinement()
    fr.to_file(tmp_path / "a.json", extra={"note": [1, 2]})
    assert json.loads((tmp_path / "a.json").read_text())["note"] == [1, 2]
    assert torch.equal(FrequencyRefinement.from_file(tmp_path / "a.json").table, fr.table)
    with pytest.raises(ValueError, match=r"extra: \['pad', 'table'\]"):
        fr.to_file(tmp_path / "b.json", extra={"table": [], "pad": "zero"})
    assert not (tmp_path / "b.json").exists()


# -- deprecated names ----------------------------------------------------------------------


def test_band_table_alias_keeps_the_old_signature_and_dtype():
    for module in (tuning, search_mod):
        with pytest.warns(DeprecationWarning, match="defenses.tables.band_table"):
            alias = module.band_table
        assert alias is layout_band_table
    t = layout_band_table("zigzag", 3, 10, *PAPER_STEPS)
    assert t.dtype == torch.float32
    assert torch.equal(t.double(), band_table(*PAPER_STEPS, 3, 10, layout="zigzag"))
    with pytest.raises(ValueError, match="pd_size"):
        layout_band_table("square", 0, 4, *PAPER_STEPS)  # the new band_table allows 0


@pytest.mark.parametrize(
    ("name", "new"),
    [
        ("Candidate", Candidate),
        ("SearchSpace", SearchSpace),
        ("PAPER_CANDIDATE", PAPER_CANDIDATE),
        ("TuneResult", TuneResult),
        ("tables_beating_paper", tuning.tables_beating_paper),
        ("BOUND_RULES", ("paper",)),
        ("LAYOUTS", ("square", "zigzag")),
    ],
)
def test_moved_search_names_warn_and_still_work(name, new):
    with pytest.warns(DeprecationWarning, match=f"segshield.tuning.search.{name} is deprecated"):
        got = getattr(search_mod, name)
    assert got == new


def test_new_names_import_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from segshield.tuning import Candidate as C  # noqa: F401
        from segshield.tuning.search import tune_table as t  # noqa: F401
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        search_mod.nope  # noqa: B018
