"""FR table search, cache, Pareto front and plots (segshield.tuning)."""

from __future__ import annotations

import io
import json
import random
import xml.etree.ElementTree as ET
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch
from PIL import Image

import segshield.tuning.objective as objective_mod
import segshield.tuning.search as search_mod
from segshield.defenses.dct import zigzag_order
from segshield.defenses.fr import FrequencyRefinement
from segshield.plotting import pareto_figure
from segshield.tuning import (
    PAPER_CANDIDATE,
    Candidate,
    SearchSpace,
    TuneConfig,
    TuneData,
    dominating,
    pareto_front,
    pareto_png,
    pareto_svg,
    tables_beating_paper,
    tune_table,
    tuning_html,
)
from segshield.tuning.cache import EvalCache
from segshield.tuning.plots import heatmap_image
from segshield.tuning.space import layout_band_table as band_table
from segshield.tuning.space import stack_tables


class ThresholdModel(torch.nn.Module):
    """Pixel-wise binary model: logit = 20 * (channel mean - 0.5); counts forward calls."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return 20.0 * (x.mean(1, keepdim=True) - 0.5)


def _split(n, seed, size=16):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    imgs, masks = [], []
    for _ in range(n):
        cy, cx = torch.randint(4, size - 4, (2,), generator=g).tolist()
        disk = ((yy - cy) ** 2 + (xx - cx) ** 2 <= (size // 4) ** 2).float()
        imgs.append((0.3 + 0.4 * disk + 0.08 * torch.rand(size, size, generator=g))[None])
        masks.append(disk.long())
    x = torch.stack(imgs)
    noise = 0.2 * torch.sign(torch.randn(x.shape, generator=g))
    return x, torch.stack(masks), (x + noise).clamp(0, 1)


SMALL = SearchSpace(
    square_sizes=((1, 2), (2, 4), (3, 5)),
    zigzag_sizes=((3, 10), (6, 21)),
    pd_steps=(10.0, 30.0),
    ac_steps=(1.0, 5.0, 12.0),
    gd_steps=(20.0, 60.0, 120.0),
)


def _run(model=None, make_split=_split, **kw):
    vx, vm, va = make_split(6, 0)
    hx, hm, ha = make_split(6, 1)
    splits = dict(
        val_images=vx,
        val_masks=vm,
        val_adversarial=va,
        heldout_images=hx,
        heldout_masks=hm,
        heldout_adversarial=ha,
    )
    settings = dict(budget=16, jpeg_qualities=(), space=SMALL, max_benign_loss=0.02)
    for k, v in kw.items():
        (splits if k in splits else settings)[k] = v
    return tune_table(model or ThresholdModel(), TuneData(**splits), TuneConfig(**settings))


def _dice(model, x, m):
    with torch.no_grad():
        p = (model(x)[:, 0] > 0).long()
    tp = ((p == 1) & (m == 1)).flatten(1).sum(1).double()
    den = ((p == 1).flatten(1).sum(1) + (m == 1).flatten(1).sum(1)).double()
    return torch.where(den > 0, 2 * tp / den.clamp_min(1), torch.ones_like(den))


# -- tables -------------------------------------------------------------------------------


def test_band_table_square_is_the_papers_layout():
    want = torch.full((8, 8), 60.0)
    want[:4, :4] = 5.0
    want[:2, :2] = 30.0
    assert torch.equal(band_table("square", 2, 4, 30, 5, 60), want)
    assert torch.equal(PAPER_CANDIDATE.table(), want)


def test_band_table_zigzag_follows_the_scan_order():
    t = band_table("zigzag", 3, 10, 30, 5, 60).flatten()[zigzag_order(8)]
    assert t[:3].eq(30).all() and t[3:10].eq(5).all() and t[10:].eq(60).all()


def test_band_table_errors():
    with pytest.raises(ValueError, match="layout"):
        band_table("diamond", 2, 4, 30, 5, 60)
    with pytest.raises(ValueError, match="ac_size"):
        band_table("square", 3, 3, 30, 5, 60)
    with pytest.raises(ValueError, match="gd"):
        band_table("square", 2, 4, 30, 5, 0)


def test_neighbours_change_exactly_one_coordinate():
    space = SearchSpace()
    for n in space.neighbours(PAPER_CANDIDATE):
        a, b = vars(n), vars(PAPER_CANDIDATE)
        changed = {k for k in a if a[k] != b[k]}
        assert changed in ({"pd"}, {"ac"}, {"gd"}, {"pd_size", "ac_size"}, {"ac_size"}, {"pd_size"})


def test_candidate_channel_scales_give_one_table_per_channel():
    c = Candidate("square", 2, 4, 30.0, 5.0, 60.0, (1, 4, 2.5))
    t = c.table()
    want = band_table("square", 2, 4, 30, 5, 60)
    assert t.shape == (3, 8, 8)
    for k, s in enumerate((1.0, 4.0, 2.5)):
        assert torch.equal(t[k], want * s)
    # All-ones scales are the shared table, with the shared table's key.
    ones = Candidate("square", 2, 4, 30.0, 5.0, 60.0, (1.0, 1.0, 1.0))
    assert ones == PAPER_CANDIDATE and ones.key() == PAPER_CANDIDATE.key()
    assert "channel_scales" not in json.loads(PAPER_CANDIDATE.key())
    assert json.loads(c.key())["channel_scales"] == [1.0, 4.0, 2.5]
    with pytest.raises(ValueError, match="channel_scales"):
        Candidate("square", 2, 4, 30.0, 5.0, 60.0, (1.0, 0.0))
    with pytest.raises(ValueError, match="one scale per image channel \\(1\\)"):
        stack_tables([c], 1)
    stacked = stack_tables([PAPER_CANDIDATE, c], 3)
    assert stacked.shape == (2, 3, 8, 8) and torch.equal(stacked[0, 2], want)


def test_scale_choices_keep_one_channel_at_the_smallest_factor():
    space = SearchSpace(channel_scales=(1.0, 2.0, 4.0, 8.0))
    choices = space.scale_choices(3)
    assert choices[0] == () and len(choices) == 4**3 - 3**3  # min == 1, (1,1,1) as ()
    assert all(min(s) == 1.0 for s in choices[1:]) and len(set(choices)) == len(choices)
    assert space.scale_choices(1) == [()]
    assert SearchSpace(channel_scales=(1.0,)).scale_choices(3) == [()]
    assert len(space.all_candidates(3)) == len(space.shared_candidates()) * len(choices)


def test_neighbours_move_one_channel_scale_to_any_other_factor():
    space = SearchSpace(channel_scales=(1.0, 2.0, 4.0))
    start = Candidate("square", 2, 4, 30.0, 5.0, 60.0, (2.0, 1.0, 4.0))
    moved = [n.channel_scales for n in space.neighbours(start, 3)]
    moved = [m for m in moved if m != (2.0, 1.0, 4.0)]
    want = [(1.0, 1.0, 4.0), (4.0, 1.0, 4.0), (2.0, 2.0, 4.0), (2.0, 4.0, 4.0)]
    want += [(2.0, 1.0, 1.0), (2.0, 1.0, 2.0)]
    assert sorted(moved) == sorted(want)
    # From a shared table any one channel can take another factor; grey images cannot.
    up = {n.channel_scales for n in space.neighbours(PAPER_CANDIDATE, 3)} - {()}
    assert up == {(2.0, 1.0, 1.0), (1.0, 2.0, 1.0), (1.0, 1.0, 2.0)} | {
        (4.0, 1.0, 1.0),
        (1.0, 4.0, 1.0),
        (1.0, 1.0, 4.0),
    }
    assert all(not n.channel_scales for n in space.neighbours(PAPER_CANDIDATE, 1))


class ChannelModel(torch.nn.Module):
    """logit = 20 (x0 - 0.5) + 100 (x1 + x2): channel 0 holds the lesion, 1 and 2 are 0."""

    def forward(self, x):
        return 20.0 * (x[:, :1] - 0.5) + 100.0 * (x[:, 1:2] + x[:, 2:3])


def _colour_split(n, seed):
    x, m, _ = _split(n, seed)
    zero = torch.zeros_like(x)
    # The attack adds 0.05 (12.75 grey levels) to the two unused channels, 0 when clean.
    return torch.cat([x, zero, zero], 1), m, torch.cat([x, zero + 0.05, zero + 0.05], 1)


def test_per_channel_scales_recover_what_a_shared_table_cannot():
    """Known answer: quantising the unused channels 8x harder wipes the attack out.

    Channels 1 and 2 are 0 on clean images, so any table keeps them exactly. The attack's
    DC coefficient there is 8 x 12.75 = 102: the paper's PD step 30 keeps 90 (block means
    of 0.044, enough to flip the background), 8x the steps (240) rounds it to 0.
    """
    kw = dict(make_split=_colour_split, budget=40, max_benign_loss="paper", seed=0)
    space = SearchSpace(
        square_sizes=((2, 4),),
        zigzag_sizes=((3, 10),),
        pd_steps=(30.0,),
        ac_steps=(5.0,),
        gd_steps=(60.0,),
        channel_scales=(1.0, 8.0),
    )
    model = ChannelModel()
    res = _run(model, space=space, **kw)
    s = res.candidate.channel_scales
    assert res.feasible and s[1] == 8.0 and s[2] == 8.0
    assert res.table.shape == (3, 8, 8)
    hx, hm, ha = _colour_split(6, 1)  # the held-out split of _run
    fr = FrequencyRefinement.from_table(res.table.double())
    paper = FrequencyRefinement.from_table(PAPER_CANDIDATE.table().double())
    assert torch.equal(fr(ha), fr(hx))  # the attack is wiped out entirely
    defended = float(_dice(model, fr(hx), hm).mean())
    assert res.heldout["tuned"]["recovered_dice"] == pytest.approx(defended)
    assert float(_dice(model, paper(ha), hm).mean()) < defended - 0.2  # the paper's table
    assert res.heldout["tuned"]["benign_loss"] <= res.heldout["paper"]["benign_loss"] + 1e-12
    html = tuning_html(res.to_dict())  # one 8x8 grid per channel, and the paired gap
    assert html.count("<caption>channel") == 3 and "<td>240</td>" in html
    gain = res.heldout_difference["recovered_dice"]["mean"]
    assert gain > 0.2 and f"recovered Dice {gain:+.4f}" in html
    # One shared table for all channels cannot do it at the paper's benign loss here.
    shared = _run(model, space=replace(space, channel_scales=(1.0,)), **kw)
    assert shared.candidate == PAPER_CANDIDATE


# -- search -------------------------------------------------------------------------------


def test_search_is_deterministic_under_a_seed():
    a, b = _run(seed=5), _run(seed=5)
    assert a.candidate == b.candidate
    assert [e["layout"] for e in a.evaluations] == [e["layout"] for e in b.evaluations]
    assert a.heldout == b.heldout
    assert 0 < a.n_evaluated <= 16 and len(a.evaluations) == a.n_evaluated


def test_search_respects_the_benign_loss_bound_on_validation():
    bound = 0.02
    res = _run(max_benign_loss=bound, seed=1, benign_se=0.0)
    assert res.feasible
    # Independent check: the real FR module with the tuned table on the validation split.
    model = ThresholdModel()
    vx, vm, va = _split(6, 0)
    fr = FrequencyRefinement.from_table(res.table.double())
    loss = float((_dice(model, vx, vm) - _dice(model, fr(vx), vm)).mean())
    assert loss <= bound + 1e-9
    assert res.validation["tuned"]["benign_loss"] == pytest.approx(loss)
    rec = float(_dice(model, fr(va), vm).mean())
    assert res.validation["tuned"]["recovered_dice"] == pytest.approx(rec)
    # The paper's table is in the search, so the choice is at least as good when feasible.
    paper = res.validation["paper"]
    if paper["benign_loss"] <= bound:
        assert res.validation["tuned"]["recovered_dice"] >= paper["recovered_dice"]
    # Every evaluated candidate that beats the tuned one in recovery breaks the bound.
    for e in res.evaluations:
        if e["recovered_dice"] > res.validation["tuned"]["recovered_dice"]:
            assert e["benign_loss"] > bound


def _se_bound(losses: torch.Tensor, n_se: float) -> float:
    v = losses[~torch.isnan(losses)].double()
    return float(v.mean() + n_se * v.std(unbiased=True) / len(v) ** 0.5)


def test_margin_keeps_mean_plus_standard_errors_under_the_bound():
    bound = 0.02
    res = _run(max_benign_loss=bound, seed=1, benign_se=2.0)
    assert res.feasible and res.config["benign_se"] == 2.0
    model = ThresholdModel()
    vx, vm, _ = _split(6, 0)
    fr = FrequencyRefinement.from_table(res.table.double())
    per_image = _dice(model, vx, vm) - _dice(model, fr(vx), vm)
    ucb = _se_bound(per_image, 2.0)
    assert ucb <= bound + 1e-9
    assert res.validation["tuned"]["benign_ucb"] == pytest.approx(ucb)
    # Tables that recover more were rejected by the margin (their mean may be in bound).
    for e in res.evaluations:
        if e["recovered_dice"] > res.validation["tuned"]["recovered_dice"]:
            assert e["benign_ucb"] > bound


def test_paper_bound_picks_a_table_that_dominates_the_paper_table_on_validation():
    res = _run(max_benign_loss="paper", seed=2)
    paper, tuned = res.validation["paper"], res.validation["tuned"]
    # The bound is the paper table's own loss, measured independently here.
    model = ThresholdModel()
    vx, vm, _ = _split(6, 0)
    fr = FrequencyRefinement.from_table(PAPER_CANDIDATE.table().double())
    paper_loss = float((_dice(model, vx, vm) - _dice(model, fr(vx), vm)).mean())
    assert res.config["benign_loss_bound"] == pytest.approx(paper_loss)
    assert res.config["max_benign_loss"] == "paper"
    assert res.feasible
    assert tuned["benign_loss"] <= paper["benign_loss"] + 1e-12
    assert tuned["recovered_dice"] >= paper["recovered_dice"]
    # Paired margin: the tuned table's per-image excess loss over the paper table's,
    # plus one standard error, is <= 0 (computed here with the real FR module).
    tuned_fr = FrequencyRefinement.from_table(res.table.double())
    excess = _dice(model, fr(vx), vm) - _dice(model, tuned_fr(vx), vm)
    assert _se_bound(excess, 1.0) <= 1e-9 or torch.equal(res.table, PAPER_CANDIDATE.table())
    assert paper["benign_ucb"] == 0.0
    # No evaluated table with a higher recovery passes the paired margin.
    for e in res.evaluations:
        if e["recovered_dice"] > tuned["recovered_dice"]:
            assert e["benign_ucb"] > 0


def test_search_reports_no_feasible_table(caplog):
    res = _run(
        max_benign_loss=0.0,
        budget=6,
        space=SearchSpace(
            square_sizes=((1, 2),),
            zigzag_sizes=((3, 10),),
            pd_steps=(200.0,),
            ac_steps=(200.0,),
            gd_steps=(200.0,),
        ),
    )
    assert not res.feasible
    assert "no table met the benign-loss bound" in caplog.text


def test_search_resumes_from_its_cache_without_reevaluating(tmp_path, monkeypatch):
    scored = []
    real = objective_mod.tables_dice

    def counting(model, images, masks, tables, *a, **kw):
        scored.append(tables.shape[0])
        return real(model, images, masks, tables, *a, **kw)

    # validation and held-out (the report scores through objective.candidates_dice)
    monkeypatch.setattr(objective_mod, "tables_dice", counting)
    cache = tmp_path / "c.jsonl"
    first = _run(cache=cache, seed=2)
    n_first = sum(scored)
    n = first.n_evaluated
    assert 0 < n <= 16 and first.n_cached == 0
    assert len(cache.read_text().splitlines()) == 1 + n
    scored.clear()
    second = _run(cache=cache, seed=2)
    assert second.n_evaluated == 0 and second.n_cached == n
    # Only the held-out report is recomputed: 2 x n validation tables fewer.
    assert n_first - sum(scored) == 2 * n
    assert second.candidate == first.candidate and second.heldout == first.heldout
    # Without resume the cache starts afresh.
    third = _run(cache=cache, seed=2, resume=False)
    assert third.n_evaluated == n


def test_cache_rejects_other_inputs_and_drops_a_truncated_line(tmp_path, caplog):
    path = tmp_path / "c.jsonl"
    c = EvalCache(path, "fp1")
    c.put("static", "a", {"benign_loss": 0.1, "recovered_dice": 0.5})
    c.put("static", "b", {"benign_loss": 0.2, "recovered_dice": 0.6})
    with open(path, "a") as fh:
        fh.write('{"type": "eval", "objective": "sta')  # interrupted write
    again = EvalCache(path, "fp1")
    assert len(again) == 2 and again.get("static", "b")["recovered_dice"] == 0.6
    assert "truncated" in caplog.text
    assert path.read_text().endswith("}\n")
    with pytest.raises(ValueError, match="fingerprint differs"):
        EvalCache(path, "fp2")
    other = tmp_path / "x.jsonl"
    other.write_text('{"hello": 1}\n')
    with pytest.raises(ValueError, match="not a segshield tuning cache|expected a segshield"):
        EvalCache(other, "fp1")


def test_search_writes_the_contract_json_loadable_by_frequency_refinement(tmp_path):
    res = _run(seed=3)
    data = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    for row in ("paper", "tuned"):
        assert set(data["heldout"][row]) >= {"benign_loss", "recovered_dice"}
    assert data["seed"] == 3 and "config" in data and "segshield_version" in data
    path = tmp_path / "t.json"
    path.write_text(json.dumps(data))
    fr = FrequencyRefinement.from_file(path)
    assert torch.equal(fr.table.float(), res.table)
    # Held-out rows are what the model scores with that table on the held-out split.
    model = ThresholdModel()
    hx, hm, ha = _split(6, 1)
    assert data["heldout"]["tuned"]["recovered_dice"] == pytest.approx(
        float(_dice(model, fr(ha), hm).mean())
    )
    assert "<svg" in tuning_html(data)
    # The paired held-out difference, tuned minus paper, recomputed per image here.
    paper = FrequencyRefinement.from_table(PAPER_CANDIDATE.table().double())
    benign = _dice(model, paper(hx), hm) - _dice(model, fr(hx), hm)
    rec = _dice(model, fr(ha), hm) - _dice(model, paper(ha), hm)
    for name, d in (("benign_loss", benign), ("recovered_dice", rec)):
        got = data["heldout_difference"][name]
        assert got["n"] == 6
        assert got["mean"] == pytest.approx(float(d.mean()), abs=1e-12)
        assert got["se"] == pytest.approx(float(d.std(unbiased=True)) / 6**0.5, abs=1e-12)


def test_heldout_all_scores_every_searched_table_on_the_heldout_split():
    plain = _run(seed=1)
    full = _run(seed=1, heldout_all=True)
    assert full.candidate == plain.candidate and torch.equal(full.table, plain.table)
    assert full.config["heldout_all"] and not plain.config["heldout_all"]
    # Without it: the validation front, and the tuned table when it is not on it.
    plain_tables = [r for r in plain.pareto if r["kind"] in ("front", "scored")]
    assert [r for r in plain_tables if r["kind"] == "scored"] == [
        r for r in plain_tables if r["kind"] == "scored" and r["layout"] == asdict(plain.candidate)
    ]
    assert asdict(plain.candidate) in [r["layout"] for r in plain_tables]
    tables = [r for r in full.pareto if r["kind"] in ("front", "scored")]
    # Every table of the search once, front or scored.
    keys = [Candidate.from_layout(r["layout"]).key() for r in tables]
    assert len(keys) == len(set(keys)) == len(full.evaluations)
    # A scored row is what the model gives with that table on the held-out split.
    model = ThresholdModel()
    hx, hm, ha = _split(6, 1)
    row = next(r for r in full.pareto if r["kind"] == "scored")
    fr = FrequencyRefinement.from_table(Candidate.from_layout(row["layout"]).table().double())
    clean = _dice(model, hx, hm)
    assert row["recovered_dice"] == pytest.approx(float(_dice(model, fr(ha), hm).mean()))
    assert row["benign_loss"] == pytest.approx(float((clean - _dice(model, fr(hx), hm)).mean()))
    # The count of tables beating the paper's is the brute-force one.
    paper = next(r for r in full.pareto if r["label"] == "paper")
    p = (paper["benign_loss"], paper["recovered_dice"])
    others = [r for r in tables if Candidate.from_layout(r["layout"]) != PAPER_CANDIDATE]
    want = [
        r
        for r in others
        if r["benign_loss"] <= p[0]
        and r["recovered_dice"] >= p[1]
        and (r["benign_loss"], r["recovered_dice"]) != p
    ]
    beating, n = tables_beating_paper(full.pareto)
    assert n == len(others) == len(full.evaluations) - 1 and beating == want
    # With the paper row made the worst point, every other table beats it.
    worst = {"benign_loss": 1.0, "recovered_dice": 0.0}
    rows = [{**r, **worst} if r["label"] == "paper" else r for r in full.pareto]
    assert tables_beating_paper(rows)[0] == others
    assert f"{len(want)} of the {n} other tables" in tuning_html(full.to_dict())


def test_dominating_and_tables_beating_paper_errors():
    pts = [(0.01, 0.5), (0.01, 0.5), (0.0, 0.5), (0.02, 0.9), (float("nan"), 1.0), (0.0, 0.6)]
    assert dominating(pts, 0) == [2, 5]  # an equal point does not dominate
    assert dominating(pts, 5) == []
    with pytest.raises(IndexError, match="index"):
        dominating(pts, 6)
    with pytest.raises(ValueError, match="paper"):
        tables_beating_paper([{"label": "tuned", "benign_loss": 0.0, "recovered_dice": 0.5}])


def test_search_input_errors():
    with pytest.raises(ValueError, match="max_benign_loss"):
        _run(max_benign_loss=1.5)
    with pytest.raises(ValueError, match="max_benign_loss.*paper"):
        _run(max_benign_loss="jpeg")
    with pytest.raises(ValueError, match="benign_se"):
        _run(benign_se=-1)
    with pytest.raises(ValueError, match="budget"):
        _run(budget=0)
    vx, _, va = _split(6, 0)
    with pytest.raises(ValueError, match="val_adversarial"):
        _run(val_adversarial=va[:3])
    with pytest.raises(ValueError, match="jpeg_qualities"):
        _run(jpeg_qualities=(0,))


# -- Pareto and plots ---------------------------------------------------------------------


def test_pareto_front_matches_brute_force():
    rng = random.Random(0)
    pts = [(round(rng.random(), 1), round(rng.random(), 1)) for _ in range(60)]
    pts.append((float("nan"), 1.0))

    def dominated(i):
        x, y = pts[i]
        return any(
            (a <= x and b >= y) and (a < x or b > y) for j, (a, b) in enumerate(pts) if j != i
        )

    want = {
        i
        for i, p in enumerate(pts)
        if not np.isnan(p[0]) and not dominated(i) and pts.index(p) == i
    }
    assert set(pareto_front(pts)) == want
    with pytest.raises(ValueError, match="pair"):
        pareto_front([(1.0, 2.0, 3.0)])


def test_pareto_plots_png_and_svg(tmp_path):
    from matplotlib.colors import to_hex

    rows = [
        {"label": "paper", "benign_loss": 0.01, "recovered_dice": 0.6, "on_front": True},
        {"label": "tuned", "benign_loss": 0.005, "recovered_dice": 0.7, "on_front": True},
        {"label": "jpeg:q=75", "benign_loss": 0.02, "recovered_dice": 0.5},
        {"label": "front", "kind": "front", "benign_loss": 0.0, "recovered_dice": 0.4},
        {"label": "table", "kind": "scored", "benign_loss": 0.003, "recovered_dice": 0.45},
    ]
    data = pareto_png(tmp_path / "p.png", rows, "t")
    assert (tmp_path / "p.png").read_bytes() == data
    img = Image.open(io.BytesIO(data))
    assert img.size == (640, 440) and img.mode == "RGB"
    svg = pareto_svg(rows, "a <title>")
    root = ET.fromstring(svg)  # well-formed, title escaped
    assert root.tag.endswith("svg")
    assert "jpeg:q=75" in svg and "&lt;title&gt;" in svg
    # Search tables are unlabelled dots drawn under the named defences (matplotlib).
    ax = pareto_figure(rows, "t").axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["jpeg:q=75", "paper", "tuned"]
    dots = sorted(ax.collections, key=lambda c: c.get_zorder())
    assert sum(len(c.get_offsets()) for c in dots) == 5
    assert [to_hex(c.get_facecolors()[0]) for c in dots[:2]] == ["#d7d7d7", "#a0a0a0"]


def test_heatmap_image_checks_its_input():
    img = heatmap_image(torch.arange(64.0).reshape(8, 8), "x", log=True)
    assert img.mode == "RGB"
    # Cell colours follow the values: first and last cell differ.
    arr = np.asarray(img)
    assert not np.array_equal(arr[36 + 2, 20 + 2], arr[36 + 7 * 44 + 2, 20 + 7 * 44 + 2])
    with pytest.raises(ValueError, match="8x8"):
        heatmap_image(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="cell"):
        heatmap_image(torch.zeros(8, 8), cell=4)


def test_adaptive_objective_scores_the_best_tables_and_is_cached(tmp_path):
    cache = tmp_path / "c.jsonl"
    kw = dict(attack="fgsm:eps=0.1", targets=None, adaptive=True, adaptive_top_k=2, seed=4)
    res = _run(cache=cache, **kw)
    scored = [e for e in res.evaluations if "adaptive_recovered_dice" in e]
    # The two best feasible tables plus the paper's table (for comparison).
    assert 2 <= len(scored) <= 3
    assert any(e["layout"] == vars(PAPER_CANDIDATE) for e in scored)
    feasible = [e for e in scored if e["benign_loss"] <= 0.02]
    best = max(min(e["recovered_dice"], e["adaptive_recovered_dice"]) for e in feasible)
    tuned = res.validation["tuned"]
    assert min(tuned["recovered_dice"], tuned["adaptive_recovered_dice"]) == pytest.approx(best)
    again = _run(cache=cache, **kw)
    assert again.n_evaluated == 0 and again.candidate == res.candidate


def test_adversarial_images_are_cached_beside_the_cache(tmp_path, monkeypatch):
    calls = []
    real = search_mod.adversarial_examples

    def counting(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(search_mod, "adversarial_examples", counting)
    cache = tmp_path / "c.jsonl"
    kw = dict(attack="fgsm:eps=0.1", targets=None, val_adversarial=None, cache=cache)
    first = _run(heldout_adversarial=None, **kw)
    assert len(calls) == 2
    assert (tmp_path / "c.val-adv.safetensors").is_file()
    again = _run(heldout_adversarial=None, **kw)
    assert len(calls) == 2 and again.heldout == first.heldout
    _run(heldout_adversarial=None, resume=False, **kw)
    assert len(calls) == 4


def test_adversarial_examples_in_batches_equal_one_call_on_the_whole_split():
    """Targets come from the whole split; batched ASMA is per-sample, so batches agree."""
    from segshield.attacks import get_attack, make_targets
    from segshield.tuning.scoring import adversarial_examples

    x, m, _ = _split(5, 0)
    model = ThresholdModel()
    attack = get_attack("asma:steps=3")
    whole = attack(model, x, masks=m, target_masks=make_targets("other-gt", m, seed=4))
    calls = []

    def recording(model, images, **kw):
        calls.append(images.shape[0])
        return attack(model, images, **kw)

    got = adversarial_examples(model, x, m, recording, seed=4, batch_size=2)
    assert calls == [2, 2, 1]
    assert torch.allclose(got, whole.adversarial, atol=1e-6)
    assert not torch.equal(got, x)  # the attack did move the images
    with pytest.raises(ValueError, match="batch_size"):
        adversarial_examples(model, x, m, attack, batch_size=0)
