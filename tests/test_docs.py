"""The docs stand on their own: no internal spec or work items; section references resolve."""

from __future__ import annotations

import importlib.util
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALGORITHMS = ROOT / "docs" / "ALGORITHMS.md"
#: Files that name the forbidden patterns on purpose (they look for them).
OWN = {ROOT / "scripts" / "sweep_references.py", Path(__file__).resolve()}

FORBIDDEN = {
    "the internal spec (SPEC §N)": re.compile(r"\bSPEC\s+§"),
    "the internal spec file": re.compile(r"shared/SPEC\.md"),
    "an internal work item (issue N)": re.compile(r"\bissues? ?[-#]?\d+", re.IGNORECASE),
}
#: ``ALGORITHMS.md §2``, ``ALGORITHMS.md §4b``, ``ALGORITHMS.md §2-3`` (a range).
REFERENCE = re.compile(r"ALGORITHMS\.md\s+§(\d+[a-z]?(?:\.\d+)?)(?:-(\d+))?")
HEADING = re.compile(r"^#{2,4} §(\d+[a-z]?(?:\.\d+)?)\b", re.MULTILINE)
#: The sections every reference may name; numbered as in the spec the code was built to.
REQUIRED_SECTIONS = {"1", "2", "3", "4", "4b", "5", "6"}


def _files(*names: str, suffixes: tuple[str, ...] = (".py", ".md")) -> list[Path]:
    out: list[Path] = []
    for name in names:
        path = ROOT / name
        found = [path] if path.is_file() else sorted(path.rglob("*")) if path.is_dir() else []
        out += [p for p in found if p.is_file() and p.suffix in suffixes and p not in OWN]
    return out


def _sections() -> set[str]:
    return set(HEADING.findall(ALGORITHMS.read_text(encoding="utf-8")))


def _load_sweep():
    spec = importlib.util.spec_from_file_location(
        "sweep_references", ROOT / "scripts" / "sweep_references.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_algorithms_page_has_the_spec_numbering():
    found = _sections()
    assert REQUIRED_SECTIONS <= found, f"missing sections: {REQUIRED_SECTIONS - found}"
    text = ALGORITHMS.read_text(encoding="utf-8")
    for paper in ("MICCAI 2020", "CVPR 2019", "MICCAI 2019", "ICCV 2017", "ECCV 2022"):
        assert paper in text, f"{paper} is not cited"


@pytest.mark.parametrize("what", sorted(FORBIDDEN))
def test_user_docs_name_no_internal_spec_or_work_item(what):
    pattern = FORBIDDEN[what]
    hits = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in _files("src", "README.md", "docs")
        for n, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1)
        if pattern.search(line)
    ]
    assert not hits, (
        f"{len(hits)} line(s) name {what}; cite docs/ALGORITHMS.md §N instead "
        "(python scripts/sweep_references.py rewrites them):\n" + "\n".join(hits[:20])
    )


def test_every_algorithms_reference_names_a_section():
    sections = _sections()
    bad = []
    for path in _files("src", "tests", "benchmarks", "scripts", "docs", "README.md"):
        text = path.read_text(encoding="utf-8")
        for n, line in enumerate(text.split("\n"), 1):
            for first, last in REFERENCE.findall(line):
                names = [first]
                if last:  # a range such as §2-3
                    start = int(first) if first.isdigit() else int(last)
                    names += [str(k) for k in range(start, int(last) + 1)]
                bad += [f"{path.relative_to(ROOT)}:{n}: §{s}" for s in names if s not in sections]
    assert not bad, "references to sections docs/ALGORITHMS.md lacks:\n" + "\n".join(bad)


SAMPLE = '''"""Widgets (SPEC §2): the transform (issue 7).

Design (issue 3): blocks. Targets (issue 2): fast; see ``../shared/SPEC.md``.
"""


def f():
    """Pure function (SPEC §5, issue 7).

    A long paragraph whose words run up to the limit, with one reference to SPEC §4 in it,
    and then a second line of the same paragraph.

    Args:
        x: images (SPEC §1); and so on.
    """
'''


def test_sweep_rewrites_rewraps_and_is_idempotent(tmp_path):
    sweep = _load_sweep()
    (tmp_path / "src").mkdir()
    target = tmp_path / "src" / "mod.py"
    target.write_text(SAMPLE, encoding="utf-8")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "X.md").write_text("## Conventions (SPEC §1)\n", encoding="utf-8")
    out = io.StringIO()
    assert sweep.sweep(tmp_path, check=True, out=out) == 1
    assert target.read_text(encoding="utf-8") == SAMPLE  # --check writes nothing
    assert sweep.sweep(tmp_path, out=io.StringIO()) == 0
    text = target.read_text(encoding="utf-8")
    assert '"""Widgets (docs/ALGORITHMS.md §2): the transform.' in text
    assert "Design: blocks. Targets: fast; see docs/ALGORITHMS.md." in text
    assert '"""Pure function (docs/ALGORITHMS.md §5).' in text
    assert "x: images (docs/ALGORITHMS.md §1); and so on." in text
    assert max(len(line) for line in text.split("\n")) <= 100
    assert "reference to docs/ALGORITHMS.md §4 in\n    it, and then a second line" in text
    assert "SPEC" not in text and "issue" not in text
    compile(text, "mod.py", "exec")
    md = (tmp_path / "docs" / "X.md").read_text(encoding="utf-8")
    assert md == "## Conventions (ALGORITHMS.md §1)\n"
    again = io.StringIO()
    assert sweep.sweep(tmp_path, check=True, out=again) == 0
    assert "would change 0 file(s)" in again.getvalue()


def test_sweep_reports_what_it_cannot_fix(tmp_path):
    sweep = _load_sweep()
    (tmp_path / "src").mkdir()
    line = "x = 1  # " + "word " * 16 + "(SPEC §2)"
    (tmp_path / "src" / "m.py").write_text(
        f'"""{"A summary that is long enough to overflow " * 2}(SPEC §3)."""\n{line}\n',
        encoding="utf-8",
    )
    out = io.StringIO()
    assert sweep.sweep(tmp_path, out=out) == 1
    report = out.getvalue()
    assert "src/m.py:1:" in report and "wrap by hand" in report
    assert "2 left for a hand edit" in report
