"""Point references to the internal spec at docs/ALGORITHMS.md and drop work-item numbers.

The docs must stand on their own: a user's clone has no ``../shared/SPEC.md`` and does
not know the project's internal work items. This script rewrites, in ``src/``,
``tests/``, ``benchmarks/``, ``scripts/``, ``docs/`` and ``README.md``:

- ``SPEC §N`` into ``docs/ALGORITHMS.md §N`` (``ALGORITHMS.md §N`` inside ``docs/``,
  which is where that page lives), and ``../shared/SPEC.md`` into the page itself;
  ALGORITHMS.md keeps SPEC's section numbers, so every reference maps one to one;
- mentions of internal work items, such as ``(issue 7)`` or ``issue 12's``, out of
  the text, with exact rewrites (:data:`MANUAL`) where a plain deletion would spoil
  the sentence.

A Python line that the rewrite pushes over 100 characters is re-wrapped when it lies in
a docstring body or a comment (the words that overflow move to the next line of the
same paragraph); anything else that would still be too long is reported to be fixed
by hand. The script is idempotent and prints a diff of what it changed.

Usage::

    python scripts/sweep_references.py            # rewrite, print the changes
    python scripts/sweep_references.py --check    # change nothing; exit 1 if any is left

Exit status: 0 when nothing is left to do, 1 when ``--check`` finds a file to rewrite
or when a reference or an over-long line is left that needs a hand edit.
"""

from __future__ import annotations

import argparse
import difflib
import io
import re
import sys
import tokenize
from collections.abc import Sequence
from pathlib import Path

__all__ = ["MANUAL", "RULES", "LEFTOVERS", "sweep_text", "sweep", "main"]

#: What the sweep covers, relative to the repository root.
TARGETS = ("src", "tests", "benchmarks", "scripts", "docs", "README.md")
SUFFIXES = (".py", ".md")
#: Files that must name the patterns they look for.
OWN_FILES = ("scripts/sweep_references.py", "tests/test_docs.py")
LIMIT = 100
DOC = "docs/ALGORITHMS.md"

#: Exact rewrites, applied first: sentences where a generic rule would read badly or
#: would push a docstring summary or a code line over the length limit.
MANUAL: tuple[tuple[str, str], ...] = (
    (
        '"""ASMA: Adaptive Segmentation Mask Attack (Ozbulak et al., MICCAI 2019; SPEC §4), '
        "batched.\n\nPer iteration, on the current image ``X`` (``X_0`` the clean image) and "
        "target ``Y^t``:",
        '"""ASMA: Adaptive Segmentation Mask Attack (Ozbulak et al., MICCAI 2019), batched.\n\n'
        f"{DOC} §4 describes the algorithm. Per iteration, on the current image ``X``\n"
        "(``X_0`` the clean image) and target ``Y^t``:",
    ),
    (
        '"""Mean IoU over foreground classes ``1..K-1`` per sample (SPEC §5 empty-mask rules).',
        f'"""Mean IoU over foreground classes ``1..K-1`` per sample (empty masks: {DOC} §5).',
    ),
    (
        '"""``segshield evaluate``: measure defences against attacks, one row per sample '
        "(SPEC §5).",
        f'"""``segshield evaluate``: defences against attacks, one row per sample ({DOC} §5).',
    ),
    (
        '"""``SegDataset``: image/mask pairs, read lazily, resized by one policy, as SPEC §1 '
        "tensors.",
        f'"""``SegDataset``: image/mask pairs, read lazily, resized by one policy ({DOC} §1).',
    ),
    (
        '"""ISIC 2016-2018 Task 1 layout (SPEC §6): lesion images with 0/255 segmentation masks.',
        f'"""ISIC 2016-2018 Task 1 layout ({DOC} §6): lesion images with 0/255 masks.',
    ),
    (
        "The masks are already SPEC §1 class ids and are used as they are; any other value "
        "is an\nerror naming the file.",
        f"The masks already hold the class ids of {DOC} §1 and are used as they are;\n"
        "any other value is an error naming the file.",
    ),
    (
        '"""REFUGE encoding (SPEC §6): one mask per image, 0 = cup, 128 = disc rim, 255 = '
        "background.",
        f'"""REFUGE ({DOC} §6): one mask per image, 0 = cup, 128 = disc rim, 255 = background.',
    ),
    (
        "the result is SPEC §1's\n0 background, 1 rim, 2 cup.",
        f"the result is\n0 background, 1 rim, 2 cup ({DOC} §1).",
    ),
    (
        '"""2-D DCT-II of every non-overlapping 8x8 block: ``C = D B Dᵀ`` (SPEC §2 steps 2-3).',
        f'"""2-D DCT-II of every 8x8 block: ``C = D B Dᵀ`` ({DOC} §2 steps 2-3).',
    ),
    (
        '"""Median filter ``k x k`` per channel (SPEC §3 baseline; feature squeezing, Xu et al. '
        '2018)."""',
        '"""Median filter ``k x k`` per channel (feature squeezing, Xu et al. 2018).\n\n'
        f'A baseline defence of {DOC} §3.\n"""',
    ),
    (
        "Paper: SPEC §5; vertical CDR as in Garway-Heath et al. (1998), the downstream "
        "measure\n    of Liu et al. (MICCAI 2020).",
        "Paper: vertical CDR as in Garway-Heath et al. (1998), the downstream measure of\n"
        f"    Liu et al. (MICCAI 2020); see {DOC} §5.",
    ),
    (
        "Paper: SPEC §5 glaucoma downstream (absolute CDR error, glaucoma call at a CDR\n"
        "    threshold), following the downstream evaluation of Liu et al. (MICCAI 2020).",
        f"Paper: the glaucoma downstream of {DOC} §5 (absolute CDR error, glaucoma\n"
        "    call at a CDR threshold), following the downstream evaluation of Liu et al.\n"
        "    (MICCAI 2020).",
    ),
    (
        'Paper: issue 7 downstream measure for dermoscopy (lesion area, the "D"/size input of',
        'Paper: a downstream measure for dermoscopy (lesion area, the "D"/size input of',
    ),
    (
        '"""The evaluation harness: models x datasets x attacks x defences, per sample (SPEC §5).',
        f'"""Evaluation harness: models x datasets x attacks x defences per sample ({DOC} §5).',
    ),
    (
        'parts.append("(empty ground truth, SPEC §5) are counted and left out of the means.</p>")',
        "parts.append(\n"
        f'        "(empty ground truth, {DOC} §5) are counted and left out of the means.</p>"\n'
        "    )",
    ),
    (
        '"""The published one-image ASMA loop written out plainly (SPEC §4, Ozbulak et al.).',
        f'"""The published one-image ASMA loop, written out plainly ({DOC} §4).',
    ),
    (
        '"""Baseline defences (SPEC §3) against scipy / Pillow references, gradients, registry."""',
        f'"""Baseline defences ({DOC} §3) vs scipy / Pillow references, gradients, registry."""',
    ),
    (
        "Paper: issue 7 (classification downstream of Liu et al., MICCAI 2020); labels as in",
        "Paper: the classification downstream of Liu et al., MICCAI 2020; labels as in",
    ),
    (
        "Paper: issue 7 (FR evaluated on classifiers, Liu et al., MICCAI 2020); CW (Carlini",
        "Paper: FR evaluated on classifiers (Liu et al., MICCAI 2020); CW (Carlini",
    ),
    ("(issue 6, README)", "(see the README)"),
    ("the issue's contract", "the command's contract"),
    ("(the issue quotes about 26 ms)", "(an earlier estimate was about 26 ms)"),
    (
        "`../shared/SPEC.md` (kept beside the repository by the team) defines\nthe algorithms;",
        "[ALGORITHMS.md](ALGORITHMS.md) describes\nthe algorithms;",
    ),
)

#: Generic rewrites, in order, after :data:`MANUAL`; ``{doc}`` is the page's path as seen
#: from the file (``docs/ALGORITHMS.md``, or ``ALGORITHMS.md`` inside ``docs/``).
RULES: tuple[tuple[str, str], ...] = (
    (r"\(SPEC §(\w+), issues? \d+\)", r"(SPEC §\1)"),
    (r"\(issues? \d+, SPEC §(\w+)\)", r"(SPEC §\1)"),
    (r" ?\(issues? \d+\)", ""),
    (r"\(issues? \d+, ", "("),
    (r", issues? \d+\)", ")"),
    (r"rows of issue \d+\)", "rows)"),
    (r"\b[Tt]he issue-\d+ ", "the "),
    (r"\bissue \d+'s ", "the "),
    (r"Paper: SPEC §", "Reference: SPEC §"),
    (r"`{0,2}(?:\.\./)?shared/SPEC\.md`{0,2}", "{doc}"),
    (r"\bSPEC(\s+)§", r"{doc}\1§"),
)

#: What must not be left anywhere the sweep covers.
LEFTOVERS = (
    re.compile(r"\bSPEC\s+§"),
    re.compile(r"shared/SPEC\.md"),
    re.compile(r"\bissues? ?[-#]?\d+", re.IGNORECASE),
)

_ITEM = re.compile(r"^\s*(?:[-*+] |\d+\. |[\w*.]+(?: \([^)]*\))?: )")
_NOT_PROSE = re.compile(r'^\s*(?:>>>|\.\.\.|"""|\'\'\'|\||[-*+] |\d+\. |[A-Z][\w ]*:$)')
_WORD = re.compile(r"(?:``.*?``|\S)+")


def _doc_path(rel: str) -> str:
    return "ALGORITHMS.md" if rel.startswith("docs/") else DOC


def sweep_text(text: str, rel: str) -> str:
    """The rewritten text of one file (``rel``: its path relative to the root)."""
    before = _long(text.split("\n"))
    for old, new in MANUAL:
        if rel.startswith("docs/"):
            new = new.replace(DOC, "ALGORITHMS.md")
        text = text.replace(old, new)
    doc = _doc_path(rel)
    for pattern, repl in RULES:
        text = re.sub(pattern, repl.replace("{doc}", doc), text)
    if rel.endswith(".py"):
        text = _rewrap(text, before)
    return text


def _long(lines: Sequence[str]) -> set[str]:
    return {line for line in lines if len(line) > LIMIT}


def _strings(text: str) -> list[tuple[int, int]]:
    """0-based ``(first, last)`` line ranges of the triple-quoted strings in ``text``."""
    out = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            body = tok.string.lstrip("rRbBuUfF")
            if tok.type == tokenize.STRING and body[:3] in ('"""', "'''"):
                out.append((tok.start[0] - 1, tok.end[0] - 1))
    except (tokenize.TokenError, SyntaxError):
        return []
    return out


def _joinable(cur: str, nxt: str) -> bool:
    """Whether ``nxt`` continues the paragraph of ``cur`` (same docstring or comment)."""
    if not nxt.strip() or _NOT_PROSE.match(nxt.lstrip("# ")) or nxt.rstrip().endswith('"""'):
        return False
    ci, ni = len(cur) - len(cur.lstrip()), len(nxt) - len(nxt.lstrip())
    if cur.lstrip().startswith("#") != nxt.lstrip().startswith("#"):
        return False
    if ni == ci:
        return not _ITEM.match(nxt)
    return ni > ci and bool(_ITEM.match(cur))


def _continuation_indent(line: str) -> str:
    indent = line[: len(line) - len(line.lstrip())]
    if line.lstrip().startswith("#"):
        return indent + "# "
    item = _ITEM.match(line)
    if item is None:
        return indent
    return indent + ("  " if item.group(0).strip() in "-*+" else "    ")


def _wrap_at(lines: list[str], i: int, last: int) -> bool:
    """Re-wrap the paragraph from line ``i`` (``last``: the block's last line); True if done."""
    while len(lines[i]) > LIMIT:
        line = lines[i]
        lead = len(line) - len(line.lstrip())
        prefix = line[:lead] + ("# " if line.lstrip().startswith("# ") else "")
        words = _WORD.findall(line[len(prefix) :])
        carry: list[str] = []
        while len(words) > 1 and len(prefix + " ".join(words)) > LIMIT:
            carry.insert(0, words.pop())
        if not carry or len(prefix + " ".join(words)) > LIMIT:
            return False
        lines[i] = prefix + " ".join(words)
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if i + 1 <= last and _joinable(line, nxt):
            head = nxt[: len(nxt) - len(nxt.lstrip())]
            head += "# " if nxt.lstrip().startswith("# ") else ""
            lines[i + 1] = head + " ".join(carry) + " " + nxt[len(head) :]
        else:
            lines.insert(i + 1, _continuation_indent(line) + " ".join(carry))
            last += 1
        i += 1
    return True


def _rewrap(text: str, before: set[str]) -> str:
    """Re-wrap the docstring-body and comment lines that the rewrite made too long.

    Lines in ``before`` (already too long before the rewrite) are left alone.
    """
    lines = text.split("\n")
    for _ in range(len(lines)):
        blocks = _strings("\n".join(lines))
        todo = [i for i, line in enumerate(lines) if len(line) > LIMIT and line not in before]
        done = False
        for i in todo:
            block = next(((a, b) for a, b in blocks if a < i <= b), None)
            if lines[i].lstrip().startswith("# "):
                last = i
                while last + 1 < len(lines) and lines[last + 1].lstrip().startswith("# "):
                    last += 1
                block = (i, last)
            if block is not None and _wrap_at(lines, i, block[1]):
                done = True
                break
        if not done:
            break
    return "\n".join(lines)


def _files(root: Path) -> list[Path]:
    out: list[Path] = []
    for name in TARGETS:
        path = root / name
        found = [path] if path.is_file() else sorted(path.rglob("*")) if path.is_dir() else []
        out += [p for p in found if p.is_file() and p.suffix in SUFFIXES]
    own = {root / p for p in OWN_FILES}
    return [p for p in out if p not in own and ".venv" not in p.parts]


def _problems(rel: str, text: str, old_long: set[str]) -> list[str]:
    out = []
    for n, line in enumerate(text.split("\n"), 1):
        hits = [m.group(0) for pat in LEFTOVERS for m in pat.finditer(line)]
        if hits:
            out.append(f"{rel}:{n}: still names {', '.join(map(repr, hits))}; edit by hand")
        if rel.endswith(".py") and len(line) > LIMIT and line not in old_long:
            out.append(f"{rel}:{n}: {len(line)} characters after the rewrite; wrap by hand")
    return out


def sweep(root: Path, *, check: bool = False, out=sys.stdout) -> int:
    """Rewrite (or with ``check`` only inspect) every covered file under ``root``.

    Returns:
        The exit status: 1 when ``check`` finds work, or when something is left that needs
        a hand edit; else 0.
    """
    changed, problems = [], []
    for path in _files(root):
        rel = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8")
        old_long = _long(text.split("\n"))
        new = sweep_text(text, rel)
        if new != text:
            changed.append(rel)
            diff = difflib.unified_diff(
                text.split("\n"), new.split("\n"), f"a/{rel}", f"b/{rel}", n=0, lineterm=""
            )
            print("\n".join(diff), file=out)
            if not check:
                path.write_text(new, encoding="utf-8")
        problems += _problems(rel, new, old_long)
    for p in problems:
        print(p, file=out)
    verb = "would change" if check else "changed"
    print(f"{verb} {len(changed)} file(s); {len(problems)} left for a hand edit", file=out)
    return 1 if problems or (check and changed) else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``sweep_references.py [--check] [--root DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if needed")
    parser.add_argument(
        "--root", default=str(Path(__file__).resolve().parents[1]), help="repository root"
    )
    args = parser.parse_args(argv)
    return sweep(Path(args.root), check=args.check)


if __name__ == "__main__":
    sys.exit(main())
