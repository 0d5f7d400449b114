"""Check the code-size and layering rules of docs/ARCHITECTURE.md.

Rules: no module in ``src/segshield`` over 500 lines; no function over 80 lines of code
(docstrings, comments and blank lines excluded); no import cycle between the top-level
units of the package (subpackages and top-level modules), counting imports inside
functions; and each unit imports only the units :data:`ALLOWED` names for it (the table
of docs/ARCHITECTURE.md) or the foundation modules. Prints each breach and exits 1 when
there is one.

Usage: ``python scripts/check_architecture.py [SRC_DIR]`` (default ``src``).
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80

#: Torch-free (but ``_checks``) modules every unit may import; they import only each other.
FOUNDATION = frozenset(
    {
        "__init__",
        "_version",
        "_spec",
        "_registry",
        "_deprecation",
        "_checks",
        "choices",
        "gradients",
        "errors",
    }
)
#: Unit -> the other units it may import besides the foundation (docs/ARCHITECTURE.md).
ALLOWED: dict[str, frozenset[str]] = {
    "utils": frozenset(),
    "metrics": frozenset(),
    "plotting": frozenset({"utils"}),
    "diagnosis": frozenset({"metrics"}),
    "defenses": frozenset({"utils"}),
    "models": frozenset({"utils"}),
    "data": frozenset({"diagnosis", "metrics", "utils"}),
    "attacks": frozenset({"defenses", "diagnosis", "metrics", "utils"}),
    "training": frozenset({"data", "metrics", "models", "utils"}),
    "tuning": frozenset({"attacks", "data", "defenses", "metrics", "models", "plotting", "utils"}),
    "evaluation": frozenset(
        {"attacks", "data", "defenses", "diagnosis", "metrics", "models", "plotting"}
        | {"training", "utils"}
    ),
    "export": frozenset({"defenses", "models", "utils"}),
    "integrations": frozenset({"defenses", "metrics", "models", "utils"}),
    "classification": frozenset({"data", "evaluation", "models", "training"}),
    "__main__": frozenset({"cli"}),
    "cli": frozenset(
        {"attacks", "data", "defenses", "diagnosis", "evaluation", "export", "metrics"}
        | {"models", "plotting", "training", "tuning", "utils"}
    ),
}


def _unit(pkg: Path, path: Path) -> str:
    parts = path.relative_to(pkg).parts
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


def _docstring_lines(tree: ast.AST) -> set[int]:
    out: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list) or not body:
            continue
        first = body[0]
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            out.update(range(first.lineno, first.end_lineno + 1))
    return out


def _code_lines(node: ast.AST, lines: list[str], doc: set[int]) -> int:
    count = 0
    for n in range(node.lineno, node.end_lineno + 1):
        text = lines[n - 1].strip()
        if n not in doc and text and not text.startswith("#"):
            count += 1
    return count


def _imported_units(node: ast.AST, pkg: Path, path: Path) -> set[str]:
    """Top-level units of ``segshield`` an import statement reaches."""
    names: list[str] = []
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = list(path.relative_to(pkg).parts[:-1])
            base = base[: len(base) - (node.level - 1)]
            mod = [p for p in (node.module or "").split(".") if p]
            full = base + mod
            if not full:
                return {a.name for a in node.names}
            names = ["segshield." + ".".join(full)]
        else:
            mod = node.module or ""
            if mod == "segshield":
                return {a.name for a in node.names}
            names = [mod]
    return {n.split(".")[1] for n in names if n.startswith("segshield.")}


def check(src: Path, allowed: dict[str, frozenset[str]] | None = None) -> list[str]:
    """Return one message per breach of the rules (empty when the tree is clean).

    ``allowed`` replaces :data:`ALLOWED` (tests); ``None`` keeps it.
    """
    pkg = src / "segshield"
    allowed = ALLOWED if allowed is None else allowed
    units = {p.name for p in pkg.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    units |= {p.stem for p in pkg.glob("*.py")}
    problems: list[str] = []
    edges: dict[str, set[str]] = defaultdict(set)
    for path in sorted(pkg.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        rel = path.relative_to(src)
        if len(lines) > MAX_MODULE_LINES:
            problems.append(f"{rel}: {len(lines)} lines (at most {MAX_MODULE_LINES})")
        tree = ast.parse(text)
        doc = _docstring_lines(tree)
        unit = _unit(pkg, path)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = _code_lines(node, lines, doc)
                if n > MAX_FUNCTION_LINES:
                    problems.append(
                        f"{rel}:{node.lineno} {node.name}: {n} lines of code "
                        f"(at most {MAX_FUNCTION_LINES})"
                    )
            elif isinstance(node, ast.Import | ast.ImportFrom):
                found = {u if u in units else "__init__" for u in _imported_units(node, pkg, path)}
                edges[unit].update(found - {unit})
    for a, b in sorted(_cycle_edges(edges)):
        problems.append(f"import cycle: segshield.{a} <-> segshield.{b}")
    problems += _layer_breaches(edges, allowed)
    return problems


def _layer_breaches(edges: dict[str, set[str]], allowed: dict[str, frozenset[str]]) -> list[str]:
    out = []
    for unit in sorted(edges):
        may = FOUNDATION if unit in FOUNDATION else allowed.get(unit)
        if may is None:
            out.append(f"segshield.{unit}: not in the layer table (ALLOWED); add it")
            continue
        extra = edges[unit] - may - (set() if unit in FOUNDATION else FOUNDATION)
        out += [f"segshield.{unit} imports segshield.{u} (not allowed)" for u in sorted(extra)]
    return out


def _cycle_edges(edges: dict[str, set[str]]) -> set[tuple[str, str]]:
    def reaches(a: str, b: str) -> bool:
        seen, stack = set(), [a]
        while stack:
            x = stack.pop()
            if x == b:
                return True
            if x not in seen:
                seen.add(x)
                stack.extend(edges.get(x, ()))
        return False

    return {tuple(sorted((a, b))) for a in edges for b in edges[a] if reaches(b, a)}


def main(argv: list[str]) -> int:
    src = Path(argv[1]) if len(argv) > 1 else Path("src")
    problems = check(src)
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
