"""Lines of ``service/`` by subpackage, generated code excluded, split into code, docstrings, comments and blank.

    .venv/bin/python -m bench.code_size                  # the working tree
    .venv/bin/python -m bench.code_size --base faaed5b   # and a git revision beside it

"Lines" are what ``wc -l`` counts over every ``.py`` file under ``service/`` except ``service/proto_gen`` (the
issue's measure); the split tells a cut in code from a cut in prose. A subpackage is ``service/<name>/``; the
modules at the top of ``service/`` are one row, ``(top level)``.
"""

from __future__ import annotations

import argparse
import ast
import io
import subprocess
import tarfile
import tokenize
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

REPO = Path(__file__).resolve().parents[1]
KINDS = ("code", "docstring", "comment", "blank")
GENERATED = "service/proto_gen/"


def line_kinds(source: str) -> Counter[str]:
    """How many of ``source``'s lines are code, docstring, comment-only and blank (each line counted once)."""
    lines = source.splitlines()
    kinds = ["code"] * len(lines)
    for number, line in enumerate(lines):
        if not line.strip():
            kinds[number] = "blank"
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT and not token.line[: token.start[1]].strip():
            kinds[token.start[0] - 1] = "comment"
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) or not body:
            continue
        first = body[0]
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            for number in range(first.lineno - 1, first.end_lineno or first.lineno):
                kinds[number] = "docstring"
    return Counter(kinds)


def group_of(path: PurePosixPath) -> str:
    """``service/engine/batcher.py`` → ``engine``; ``service/config.py`` → ``(top level)``."""
    return path.parts[1] if len(path.parts) > 2 else "(top level)"


def tally(files: Iterable[tuple[PurePosixPath, str]]) -> dict[str, Counter[str]]:
    """Line kinds per subpackage of the ``(path, source)`` pairs under ``service/``, generated code left out."""
    groups: dict[str, Counter[str]] = {}
    for path, source in files:
        if path.suffix == ".py" and str(path).startswith("service/") and not str(path).startswith(GENERATED):
            groups.setdefault(group_of(path), Counter()).update(line_kinds(source))
    return groups


def working_tree() -> Iterator[tuple[PurePosixPath, str]]:
    for path in sorted((REPO / "service").rglob("*.py")):
        yield PurePosixPath(path.relative_to(REPO).as_posix()), path.read_text()


def revision(rev: str) -> Iterator[tuple[PurePosixPath, str]]:
    """The ``service/`` files of git revision ``rev`` (read with ``git archive``, no checkout)."""
    archive = subprocess.run(["git", "archive", rev, "service"], cwd=REPO, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is not None:
                yield PurePosixPath(member.name), handle.read().decode()


def table(columns: dict[str, dict[str, Counter[str]]]) -> str:
    """A markdown table: one row per subpackage (largest first in the last column), totals last."""
    names = sorted({g for groups in columns.values() for g in groups}, key=lambda g: -_total(columns, g))
    head = "| subpackage | " + " | ".join(f"{label}: lines (code / doc / comment / blank)" for label in columns) + " |"
    rows = [head, "|---|" + "---|" * len(columns)]
    for name in [*names, "total"]:
        cells = [_cell(groups, name) for groups in columns.values()]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _total(columns: dict[str, dict[str, Counter[str]]], group: str) -> int:
    return sum(list(columns.values())[-1].get(group, Counter()).values())


def _cell(groups: dict[str, Counter[str]], name: str) -> str:
    counts = sum(groups.values(), Counter()) if name == "total" else groups.get(name, Counter())
    split = " / ".join(str(counts[k]) for k in KINDS)
    return f"{sum(counts.values())} ({split})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.code_size", description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="a git revision to count beside the working tree (e.g. faaed5b)")
    args = parser.parse_args(argv)
    columns = {f"at {args.base}": tally(revision(args.base))} if args.base else {}
    columns["working tree"] = tally(working_tree())
    print(table(columns))


if __name__ == "__main__":
    main()
