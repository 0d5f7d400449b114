"""The size and layering rules of docs/ARCHITECTURE.md hold for the package, and the
checker that enforces them finds what it should."""

from __future__ import annotations

import importlib.util
import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: A layer table under which the toy units ``a`` and ``b`` may import each other.
OPEN = {"a": frozenset({"b"}), "b": frozenset({"a"})}


def _checker():
    spec = importlib.util.spec_from_file_location(
        "check_architecture", ROOT / "scripts" / "check_architecture.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_package_keeps_the_rules():
    assert _checker().check(ROOT / "src") == []


def _write(root: Path, rel: str, text: str) -> None:
    path = root / "segshield" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


@pytest.fixture
def tree(tmp_path):
    _write(tmp_path, "__init__.py", "")
    for pkg in ("a", "b"):
        _write(tmp_path, f"{pkg}/__init__.py", "")
    return tmp_path


def test_checker_finds_a_cycle_through_an_import_inside_a_function(tree):
    _write(tree, "a/x.py", "from segshield.b import y\n")
    _write(tree, "b/y.py", "def f():\n    from segshield.a import x\n    return x\n")
    assert _checker().check(tree, OPEN) == ["import cycle: segshield.a <-> segshield.b"]


def test_checker_counts_relative_imports(tree):
    _write(tree, "a/x.py", "from ..b import y\n")
    _write(tree, "b/y.py", "from segshield.a.x import z\n")
    assert _checker().check(tree, OPEN) == ["import cycle: segshield.a <-> segshield.b"]


def test_checker_counts_code_lines_not_docstrings_or_comments(tree):
    checker = _checker()
    body = "\n".join(f"    v{i} = {i}" for i in range(checker.MAX_FUNCTION_LINES - 1))
    doc = '    """' + "\n".join(["doc"] * 50) + '"""\n'
    _write(tree, "a/ok.py", f"def f():\n{doc}    # note\n{body}\n")
    assert checker.check(tree, OPEN) == []  # the def line + 79 statements = 80
    _write(tree, "a/long.py", f"def g():\n{body}\n    v = 1\n")
    assert checker.check(tree, OPEN) == [
        f"segshield/a/long.py:1 g: {checker.MAX_FUNCTION_LINES + 1} lines of code (at most 80)"
    ]


def test_checker_flags_a_long_module(tree):
    checker = _checker()
    _write(tree, "b/big.py", "x = 1\n" * (checker.MAX_MODULE_LINES + 1))
    assert checker.check(tree, OPEN) == ["segshield/b/big.py: 501 lines (at most 500)"]


def test_checker_flags_an_import_the_layer_table_does_not_allow(tree):
    _write(tree, "a/x.py", "import segshield.b.y\nfrom segshield import _checks\n")
    _write(tree, "b/y.py", "x = 1\n")
    _write(tree, "_checks.py", "x = 1\n")
    table = {"a": frozenset(), "b": frozenset()}
    assert _checker().check(tree, table) == ["segshield.a imports segshield.b (not allowed)"]
    assert _checker().check(tree, {"a": frozenset({"b"})}) == []
    assert _checker().check(tree, {"b": frozenset()}) == [
        "segshield.a: not in the layer table (ALLOWED); add it"
    ]


def test_architecture_page_states_the_checker_layer_table():
    """docs/ARCHITECTURE.md's table "may import" lists exactly the checker's ALLOWED."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `segshield\.(\w+)` \|[^|]*\| ([^|]*) \|$", text, re.MULTILINE)
    table = {unit: frozenset(re.findall(r"`(\w+)`", may)) - {"foundation"} for unit, may in rows}
    assert table == _checker().ALLOWED
