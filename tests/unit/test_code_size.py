"""The size rules of DESIGN's style section, enforced on the engine and the gateway: no module over 400 lines,
no function over 60 lines, no function with more than 6 parameters (``self``/``cls`` not counted; ``*args`` and
``**kwargs`` count one each). Long argument lists become a value (e.g. :class:`service.engine.streams.StreamStep`)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("service/engine", "service/gateway")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
MAX_PARAMETERS = 6


def parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    a = node.args
    names = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    names += [f"*{p.arg}" for p in (a.vararg, a.kwarg) if p is not None]
    return [n for n in names if n not in ("self", "cls")]


def violations(source: str, name: str) -> list[str]:
    """Every rule ``source`` (the module ``name``) breaks, one line each."""
    found: list[str] = []
    lines = len(source.splitlines())
    if lines > MAX_MODULE_LINES:
        found.append(f"{name}: {lines} lines (> {MAX_MODULE_LINES})")
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        where = f"{name}:{node.lineno} {node.name}"
        params = parameters(node)
        if len(params) > MAX_PARAMETERS:
            found.append(f"{where}: {len(params)} parameters (> {MAX_PARAMETERS}): {', '.join(params)}")
        length = (node.end_lineno or node.lineno) - node.lineno + 1
        if length > MAX_FUNCTION_LINES:
            found.append(f"{where}: {length} lines (> {MAX_FUNCTION_LINES})")
    return found


def modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_engine_and_gateway_keep_to_the_size_rules() -> None:
    assert len(modules()) > 20  # the walk found the packages
    broken = [v for path in modules() for v in violations(path.read_text(), str(path.relative_to(ROOT)))]
    assert not broken, "split these (DESIGN.md, Style):\n" + "\n".join(broken)


@pytest.mark.parametrize(
    ("source", "rule"),
    [
        ("def f(a, b, c, d, e, f, g): pass\n", "7 parameters"),
        ("async def f(a, *, b, c, d, e, f, **g): pass\n", "7 parameters"),
        ("class C:\n    def m(self, a, b, c, d, e, f, g): pass\n", "7 parameters"),
        ("def f():\n" + "    x = 1\n" * 60, "61 lines"),
        ("x = 1\n" * 401, "401 lines"),
    ],
)
def test_the_check_sees_each_rule_broken(source: str, rule: str) -> None:
    assert any(rule in v for v in violations(source, "m.py"))


def test_the_check_passes_what_keeps_to_the_rules() -> None:
    ok = "class C:\n    def m(self, a, b, c, d, e, f): pass\n\n@staticmethod\ndef g(cls, *a, **k): pass\n"
    assert violations(ok, "m.py") == []
