"""The docs stand on their own: no internal spec or work items; section references resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALGORITHMS = ROOT / "docs" / "ALGORITHMS.md"
#: Files that name the forbidden patterns on purpose (they look for them).
OWN = {Path(__file__).resolve()}

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
        f"{len(hits)} line(s) name {what}; cite docs/ALGORITHMS.md §N instead:\n"
        + "\n".join(hits[:20])
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
