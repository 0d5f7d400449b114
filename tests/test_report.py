"""Summary aggregation, text formats and the self-contained HTML report."""

from __future__ import annotations

import base64
import csv
import importlib.util
import io
import json
import math
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segshield.evaluation.report import render_report
from segshield.evaluation.store import ResultStore
from segshield.evaluation.summary import format_summary, summarize
from test_evaluation import ToyData, ToyModel, install_toys, run_evaluation, toy_config


def _rows():
    rows = []
    vals = {"fr": [0.9, 0.7, math.nan], "identity": [0.2, 0.4, 0.3]}
    for d, vs in vals.items():
        for i, v in enumerate(vs):
            rows.append(
                dict(
                    model="m",
                    dataset="d",
                    attack="asma",
                    adaptive=False,
                    defense=d,
                    sample=f"s{i}",
                    recovered_dice=v,
                    clean_dice=0.95,
                )
            )
    return rows


def test_summarize_matches_numpy():
    out = {r["defense"]: r for r in summarize(_rows())}
    fr = out["fr"]
    assert fr["n"] == 3 and fr["recovered_dice_nan"] == 1
    assert fr["recovered_dice"] == pytest.approx(np.mean([0.9, 0.7]))
    assert fr["recovered_dice_std"] == pytest.approx(np.std([0.9, 0.7], ddof=1))
    ident = out["identity"]
    assert ident["recovered_dice"] == pytest.approx(0.3)
    assert ident["recovered_dice_std"] == pytest.approx(np.std([0.2, 0.4, 0.3], ddof=1))
    assert ident["recovered_dice_nan"] == 0 and ident["clean_dice_std"] == pytest.approx(0.0)
    one = summarize(_rows()[:1])[0]
    assert math.isnan(one["recovered_dice_std"])
    with pytest.raises(ValueError, match="lacks the column"):
        summarize([{"model": "m"}])


def test_formats():
    s = summarize(_rows())
    md = format_summary(s, "md", digits=2)
    lines = md.splitlines()
    assert lines[0].startswith("| model | dataset | attack | adaptive | defense | n |")
    assert "| m | d | asma | no | fr | 3 | 0.95 | 0.80 |" in lines
    data = json.loads(format_summary(s, "json"))
    assert data[0]["recovered_dice"] == pytest.approx(0.8)  # full precision, no rounding
    assert data[0]["clean_dice_std"] == pytest.approx(0.0)
    assert data[1]["adaptive"] is False
    table = list(csv.DictReader(io.StringIO(format_summary(s, "csv"))))
    assert float(table[1]["recovered_dice"]) == pytest.approx(0.3)
    one = format_summary(summarize(_rows()[:1]), "json")
    assert json.loads(one)[0]["recovered_dice_std"] is None  # NaN -> null
    with pytest.raises(ValueError, match="fmt"):
        format_summary(s, "xml")
    with pytest.raises(ValueError, match="digits"):
        format_summary(s, "md", digits=11)


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        a = dict(attrs)
        if tag == "img":
            self.images.append(a["src"])
        for k in ("href", "src"):
            if k in a and tag != "img":
                self.links.append(a[k])

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture
def results(tmp_path, monkeypatch):
    install_toys(monkeypatch)
    cfg = toy_config(adaptive=["paint"], examples=2)
    store = run_evaluation(
        cfg, tmp_path / "res", models={"toy": ToyModel()}, datasets={"toy": ToyData(5)}
    )
    store.close()
    return tmp_path / "res"


def test_html_report_is_self_contained(results, tmp_path):
    out = render_report(results, tmp_path / "out" / "report.html")
    text = out.read_text(encoding="utf-8")
    p = _Collector()
    p.feed(text)
    p.close()
    assert p.links == []  # nothing external
    # 2 samples x (plain + adaptive) x 2 defences x 9 tiles (image..., target, masks)
    assert len(p.images) == 2 * 2 * 2 * 9
    for src in p.images:
        assert src.startswith("data:image/png;base64,")
        im = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        im.load()
        assert im.size == (16, 16)
    assert p.tags.count("svg") >= 3  # bars per group (2) + one scatter
    body = " ".join(p.text)
    assert "Adaptive attacks" in body and "paint" in body
    assert "Seed: 0" in body and "torch" in body
    with ResultStore(results, readonly=True) as store:
        rows = store.rows()
    # the table shows the recovered dice of identity/plain as in an independent mean
    vals = [r["recovered_dice"] for r in rows if r["defense"] == "flatten" and r["adaptive"]]
    assert f"{np.mean(vals):.3f}" in body


def test_report_says_when_no_adaptive_attack(tmp_path, monkeypatch):
    install_toys(monkeypatch)
    store = run_evaluation(
        toy_config(examples=0),
        tmp_path / "r",
        models={"toy": ToyModel()},
        datasets={"toy": ToyData(2)},
    )
    store.close()
    text = render_report(tmp_path / "r", tmp_path / "r.html").read_text()
    assert "No adaptive attack was run" in text and "<img" not in text


def test_report_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="results.sqlite"):
        render_report(tmp_path / "none", tmp_path / "x.html")
    ResultStore(tmp_path / "empty").close()
    with pytest.raises(ValueError, match="no rows"):
        render_report(tmp_path / "empty", tmp_path / "x.html")


def _chromium_or_skip() -> str:
    """The system Chromium and Playwright; a skip outside CI, a failure in CI (``CI=true``).

    ``.ci/run`` installs Debian's ``chromium``; Playwright comes with the ``dev`` extra and
    drives that browser (it never downloads one).
    """
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    missing = []
    if exe is None:
        missing.append("chromium is not installed (apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("playwright is not installed (pip install -e '.[dev]')")
    if missing:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("; ".join(missing) + ": the browser test must run in CI")
        pytest.skip("; ".join(missing))
    return exe


def _open_in_chromium(browser, url: str, shot: Path | None = None) -> dict:
    """Load ``url`` in a fresh page: per-image load status, SVG count, requests, errors."""
    page = browser.new_page(viewport={"width": 1200, "height": 1600})
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.route(re.compile(r"^https?://"), lambda route: route.abort())  # never the network
    page.goto(url, wait_until="load")
    loaded = page.evaluate("Array.from(document.images, i => i.complete && i.naturalWidth > 0)")
    svgs = page.evaluate("document.querySelectorAll('svg').length")
    if shot is not None:
        page.screenshot(path=shot)
    page.close()
    outside = [u for u in requests if not u.startswith(("file:", "data:"))]
    return {"loaded": loaded, "svgs": svgs, "outside": outside, "errors": errors}


def test_renders_in_headless_chromium(results, tmp_path):
    exe = _chromium_or_skip()
    from playwright.sync_api import sync_playwright

    out = render_report(results, tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    broken = tmp_path / "broken.html"  # a page with each fault, so the checks can fail
    broken.write_text(
        '<img src="data:image/png;base64,AAAA"><img src="https://example.invalid/x.png">'
        '<script>console.error("boom")</script>'
    )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe)
        page = _open_in_chromium(browser, out.as_uri(), shot)
        bad = _open_in_chromium(browser, broken.as_uri())
        browser.close()
    assert bad["loaded"] == [False, False]
    assert bad["outside"] == ["https://example.invalid/x.png"] and "boom" in bad["errors"]
    # 2 samples x (plain + adaptive) x 2 defences x 9 tiles, every one decoded
    assert page["loaded"] == [True] * (2 * 2 * 2 * 9)
    assert page["svgs"] >= 3  # bars per group (2) + one scatter, inline
    assert page["outside"] == [] and page["errors"] == []
    arr = np.asarray(Image.open(shot).convert("L"))
    assert arr.shape == (1600, 1200) and arr.std() > 5  # something was drawn


def test_examples_are_spread_over_attacks(results, tmp_path):
    text = render_report(results, tmp_path / "few.html", max_examples=4).read_text()
    p = _Collector()
    p.feed(text)
    assert len(p.images) == 4 * 9
    heads = [t for t in p.text if t.startswith("toy0") and "/ paint" in t]
    assert len(heads) == 4 and sum("(adaptive)" in h for h in heads) == 2


def test_report_cli_adds_analysis_and_tuning_sections(results, tmp_path, capsys):
    import torch

    from segshield.cli.main import main
    from segshield.tuning.analysis import frequency_analysis

    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    res = frequency_analysis(torch.nn.Conv2d(1, 1, 1), x, (x[:, 0] > 0.5).long(), x.flip(-1))
    analysis = tmp_path / "analysis.json"
    analysis.write_text(json.dumps(res.to_dict()))
    row = {"benign_loss": 0.0123, "recovered_dice": 0.4567, "clean_dice": 0.9}
    tuning = tmp_path / "table.json"
    tuning.write_text(
        json.dumps(
            {"table": [[1.0] * 8] * 8, "heldout": {"tuned": row}, "pareto": [], "config": {}}
        )
    )
    out = tmp_path / "with-sections.html"
    args = ["report", str(results), "-o", str(out), "--analysis", str(analysis)]
    assert main([*args, "--tuning", str(tuning)]) == 0
    text = out.read_text()
    assert "0.4567" in text and text.count("<section") >= 2
    assert text.index("0.4567") < text.index("<h2>Configuration</h2>")
    # the sections' figures are written beside the page, named after their files
    pdfs = {p.stem for p in (tmp_path / "with-sections_figures").glob("*.pdf")}
    assert {"analysis_benign_drop", "analysis_relative_ratio", "table_pareto"} <= pdfs
    assert len(pdfs) == 3 + 6 + 1  # the report's own 3, six heatmaps, one Pareto plot
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(SystemExit) as exc:
        main(["report", str(results), "-o", str(out), "--tuning", str(bad)])
    assert exc.value.code == 2
    assert "bad.json: not a segshield analysis/tuning JSON" in capsys.readouterr().err


class _Pivots(HTMLParser):
    """Cells of the ``table.pivot`` tables: one list of rows (lists of cell text) each."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.header_classes: list[list[str | None]] = []
        self.captions: list[str] = []
        self._in = self._cell = self._caption = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("class") == "pivot":
            self._in = True
            self.tables.append([])
            self.header_classes.append([])
        elif self._in and tag == "tr":
            self.tables[-1].append([])
        elif self._in and tag in ("td", "th"):
            self._cell = True
            self.tables[-1][-1].append("")
            if tag == "th":
                self.header_classes[-1].append(a.get("class"))
        elif self._in and tag == "caption":
            self._caption = True
            self.captions.append("")

    def handle_endtag(self, tag):
        if tag == "table":
            self._in = False
        elif tag in ("td", "th"):
            self._cell = False
        elif tag == "caption":
            self._caption = False

    def handle_data(self, data):
        if self._cell:
            self.tables[-1][-1][-1] += data
        elif self._caption:
            self.captions[-1] += data


def test_summary_pivots_match_their_rows():
    from segshield.evaluation.report import summary_pivots

    rows = []
    for model, attack, adaptive, defense, rec, loss in [
        ("m1", "asma", False, "none", 0.1, 0.0),
        ("m1", "asma", False, "fr", 0.7, 0.02),
        ("m1", "pgd", True, "fr", 0.4, 0.03),
        ("m1", "asma", True, "fr", 0.5, 0.025),
        ("m2", "asma", False, "none", 0.2, math.nan),
    ]:
        rows.append(
            dict(model=model, dataset="d", attack=attack, adaptive=adaptive, defense=defense,
                 sample="s", recovered_dice=rec, benign_loss=loss)
        )  # fmt: skip
    p1, p2 = summary_pivots(summarize(rows))
    assert (p1.model, p1.dataset, p2.model) == ("m1", "d", "m2")
    assert p1.defenses == ["none", "fr"]
    assert p1.attacks == [("asma", False), ("pgd", True), ("asma", True)]
    assert p1.cells[("fr", "pgd", True)] == pytest.approx((0.4, 0.03))
    assert p1.cells[("fr", "asma", False)] == pytest.approx((0.7, 0.02))
    assert ("none", "pgd", True) not in p1.cells  # not run: shown as a dash
    assert len(p1.cells) == 4 and len(p2.cells) == 1
    assert math.isnan(p2.cells[("none", "asma", False)][1])


def test_html_pivot_comes_first_and_matches_the_summary(results, tmp_path):
    out = render_report(results, tmp_path / "report.html")
    text = out.read_text(encoding="utf-8")
    with ResultStore(results, readonly=True) as store:
        summary = summarize(store.rows())
    p = _Pivots()
    p.feed(text)
    assert p.captions == ["toy / toy"] and len(p.tables) == 1
    (table,) = p.tables
    head = table[0]
    assert head == ["defence", "paint", "paint (adaptive)"]
    assert p.header_classes[0] == ["k", None, "adaptive"]  # the adaptive column is marked
    defences = list(dict.fromkeys(r["defense"] for r in summary))
    assert [row[0] for row in table[1:]] == defences
    for r in summary:
        row = table[1 + defences.index(r["defense"])]
        cell = row[1 + (1 if r["adaptive"] else 0)]
        assert cell == f"{r['recovered_dice']:.3f}loss {r['benign_loss']:.3f}"
    # compact pivot first, the long table after it; nothing names internal work items
    assert text.index('class="pivot"') < text.index("<h3>All scores</h3>")
    assert "(issue" not in text and "SPEC" not in text


def test_report_writes_each_figure_as_pdf_and_png(results, tmp_path):
    out = render_report(results, tmp_path / "r" / "report.html")
    folder = tmp_path / "r" / "report_figures"
    names = sorted(p.name for p in folder.iterdir())
    # bars per (model, dataset, attack, adaptive) and one trade-off per (model, dataset)
    stems = ["scores_toy_toy_paint", "scores_toy_toy_paint_adaptive", "tradeoff_toy_toy"]
    assert names == sorted(f"{s}.{ext}" for s in stems for ext in ("pdf", "png"))
    text = out.read_text(encoding="utf-8")
    assert text.count('<figure class="plot"><svg') == 3
    for s in stems:
        assert f"report_figures/{s}.pdf" in text
        assert (folder / f"{s}.pdf").read_bytes().startswith(b"%PDF")
        assert Image.open(folder / f"{s}.png").format == "PNG"
    # the page alone (report_html) embeds the same figures and writes nothing
    from segshield.evaluation.report import report_html

    with ResultStore(results, readonly=True) as store:
        page = report_html(store)
    assert page.count('<figure class="plot"><svg') == 3 and "report_figures" not in page
    with pytest.raises(ValueError, match="taken"):
        render_report(results, tmp_path / "r" / "report.html", figures={stems[0]: None})
