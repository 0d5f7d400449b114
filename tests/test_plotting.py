"""segshield.plotting: matplotlib figures, label placement without overlaps, file output."""

from __future__ import annotations

import io
import itertools
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from segshield.plotting import (
    bars_figure,
    figure_png,
    figure_svg,
    heatmap_figure,
    new_figure,
    pareto_figure,
    place_labels,
    save_figure,
    tradeoff_figure,
)


def _text_boxes(fig, texts):
    """Window extents of the texts alone (an Annotation's own extent adds its arrow)."""
    from matplotlib.text import Text

    renderer = fig.canvas.get_renderer()
    return [Text.get_window_extent(t, renderer) for t in texts]


def _overlapping(boxes):
    return [
        (i, j)
        for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2)
        if min(a.x1, b.x1) - max(a.x0, b.x0) > 0 and min(a.y1, b.y1) - max(a.y0, b.y0) > 0
    ]


def test_dense_scatter_labels_do_not_overlap():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0.45, 0.55, 30), rng.uniform(0.45, 0.55, 30)
    fig = new_figure(6, 4)
    ax = fig.add_subplot()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.scatter(x, y, s=10)
    labels = [f"defence-{i}" for i in range(30)]
    anns = place_labels(ax, x, y, labels)
    fig.canvas.draw()
    assert [a.get_text() for a in anns] == labels
    boxes = _text_boxes(fig, anns)
    assert _overlapping(boxes) == []
    frame = ax.bbox
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 for b in boxes)
    assert all(frame.y0 <= b.y0 and b.y1 <= frame.y1 for b in boxes)
    # Offsets are in points: the placement holds at another resolution too.
    fig.set_dpi(220)
    fig.canvas.draw()
    assert _overlapping(_text_boxes(fig, anns)) == []
    # A label does not cover its own or another point.
    pts = ax.transData.transform(np.column_stack([x, y]))
    for b in _text_boxes(fig, anns):
        assert not any(b.x0 < px < b.x1 and b.y0 < py < b.y1 for px, py in pts)


def test_place_labels_checks_lengths():
    fig = new_figure(2, 2)
    ax = fig.add_subplot()
    with pytest.raises(ValueError, match="one entry per point"):
        place_labels(ax, [0.1, 0.2], [0.1], ["a", "b"])
    with pytest.raises(ValueError, match="rings"):
        place_labels(ax, [0.1], [0.1], ["a"], rings=0)


def test_pareto_labels_of_crowded_baselines_do_not_overlap():
    rows = [
        {"label": f"jpeg:q={q}", "benign_loss": 0.01 + q * 1e-5, "recovered_dice": 0.5}
        for q in range(50, 100, 5)
    ]
    rows += [
        {"label": "paper", "benign_loss": 0.0105, "recovered_dice": 0.5, "on_front": True},
        {"label": "tuned", "benign_loss": 0.0104, "recovered_dice": 0.51, "on_front": True},
        {"label": "x", "kind": "scored", "benign_loss": float("nan"), "recovered_dice": 0.5},
    ]
    fig = pareto_figure(rows, "crowded")
    ax = fig.axes[0]
    fig.canvas.draw()
    assert len(ax.texts) == 12  # named points only; the NaN row and dots unlabelled
    assert _overlapping(_text_boxes(fig, ax.texts)) == []
    assert len(ax.lines) == 1  # the front joins paper and tuned


def test_tradeoff_names_points_by_a_legend():
    defences = [f"d{i}" for i in range(8)]
    points = [
        (d, 0.001 * i, 0.5, s) for s in ("asma", "paint (adaptive)") for i, d in enumerate(defences)
    ]
    points.append(("d0", float("nan"), 0.3, "asma"))
    fig = tradeoff_figure("m / d", points)
    ax = fig.axes[0]
    assert len(ax.texts) == 0  # no labels beside the points: nothing to overlap
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["defence", *defences, "attack", "asma", "paint (adaptive)"]
    shown = np.concatenate([c.get_offsets() for c in ax.collections])
    assert len(shown) == 16  # the NaN point is left out
    # one colour per defence, shared by both attacks; one marker shape per attack
    colours = [tuple(c.get_facecolors()[i]) for c in ax.collections for i in range(8)]
    assert colours[:8] == colours[8:] and len(set(colours[:8])) == 8
    assert ax.collections[0].get_paths()[0] != ax.collections[1].get_paths()[0]


def test_bars_values_and_reference():
    fig = bars_figure("t", ["none", "fr"], {"a": [0.25, float("nan")], "b": [0.5, 1.2]}, 0.9)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["0.250", "n/a", "0.500", "1.200"]
    widths = [p.get_width() for p in ax.patches]
    assert widths == [0.25, 0.0, 0.5, 1.0]  # clipped to [0, 1]; NaN drawn empty
    assert [y.get_text() for y in ax.get_yticklabels()] == ["none", "fr"]
    (ref,) = [ln for ln in ax.lines if ln.get_label() == "clean dice"]
    assert ref.get_xdata()[0] == 0.9
    with pytest.raises(ValueError, match="one value per label"):
        bars_figure("t", ["a"], {"a": [0.1, 0.2]}, 0.5)


def test_heatmap_cells_follow_values():
    v = np.arange(64.0).reshape(8, 8)
    v[0, 0] = np.nan
    fig = heatmap_figure(v, "t", signed=True)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert texts[0] == "nan" and texts[63] == "63" and len(texts) == 64
    img = Image.open(io.BytesIO(figure_png(fig, dpi=100))).convert("RGB")
    assert img.size == (380, 408)
    arr = np.asarray(img)
    assert tuple(arr[38, 22]) == (0xDC, 0xDC, 0xDC)  # NaN cell, top left: grey
    r, g, b = (int(c) for c in arr[346, 330])
    assert r > g + 50 and r > b + 50  # largest value, bottom right: red in RdBu_r
    with pytest.raises(ValueError, match="8x8"):
        heatmap_figure(np.zeros((4, 4)))


def test_svg_is_inline_deterministic_and_files_are_written(tmp_path):
    rows = [{"label": "paper", "benign_loss": 0.01, "recovered_dice": 0.7}]
    svg = figure_svg(pareto_figure(rows, "a & b"))
    assert svg.startswith("<svg") and "<?xml" not in svg and "DOCTYPE" not in svg
    assert ET.fromstring(svg).tag.endswith("svg")
    assert "<text" not in svg  # text as paths: the page needs no font
    assert figure_svg(pareto_figure(rows, "a & b")) == svg  # same data, same bytes
    fig = pareto_figure(rows)
    paths = save_figure(fig, tmp_path / "sub" / "p")
    assert [p.name for p in paths] == ["p.pdf", "p.png"]
    assert paths[0].read_bytes().startswith(b"%PDF")
    png = Image.open(paths[1])
    assert png.mode == "RGB" and png.size == (1280, 880)  # 6.4 x 4.4 in at 200 dpi
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["p.pdf", "p.png"]
    assert save_figure(fig, tmp_path / "p", formats=("pdf",))[0].read_bytes() == (
        paths[0].read_bytes()
    )  # no creation date: reproducible
    with pytest.raises(ValueError, match="formats"):
        save_figure(fig, tmp_path / "q", formats=("gif",))


def test_figures_do_not_touch_pyplot_or_global_style():
    import matplotlib

    before = dict(matplotlib.rcParams)
    bars_figure("t", ["a"], {"x": [0.5]}, 0.5)
    assert dict(matplotlib.rcParams) == before
    import sys

    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt

        assert plt.get_fignums() == []
