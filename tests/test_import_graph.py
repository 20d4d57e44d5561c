"""The import graph of the package: no cycles, layers import downwards (docs/architecture.md)."""

from __future__ import annotations

import ast
import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "chattts"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def resolve(current: str, is_package: bool, node: ast.ImportFrom) -> str:
    base = current.split(".") if is_package else current.split(".")[:-1]
    if node.level:
        base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
        return ".".join([*base, node.module] if node.module else base)
    return node.module or ""


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every chattts module that ``name`` imports, at module level or inside functions
    (``TYPE_CHECKING`` blocks included); ``from . import x`` counts as importing ``x``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = resolve(name, is_package, node)
            targets = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
            if len(targets) < len(node.names):
                targets.append(base)
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t.startswith("chattts") and t != name:
                out.add(t)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    g = {name: imports_of(name, path, known) for name, path in mods.items()}
    # a submodule's import of its own package's __init__ is how Python loads it, not a use
    for name, deps in g.items():
        deps -= {p for p in deps if name.startswith(p + ".")}
    return g


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if state.get(m) == 1:
                found.append([*stack[stack.index(m) :], m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(g):
        if n not in state:
            visit(n)
    return found


def test_the_graph_is_read_from_every_module():
    g = graph()
    assert "chattts.pipeline" in g and "chattts.chat" in g
    assert "chattts.pipeline" in g["chattts.chat"]
    assert "chattts.passes" in g["chattts.pipeline"]


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_layers_import_downwards():
    """torch modules know no prompts or requests; nothing below the front ends imports them."""
    g = graph()
    front = {"chattts.chat", "chattts.dia", "chattts.server", "chattts.webui", "chattts.cli"}
    upper = front | {"chattts.pipeline", "chattts.passes", "chattts.models", "chattts.text"}
    for name, deps in g.items():
        if name.startswith(("chattts.model.", "chattts.generation")):
            bad = {d for d in deps if any(d == u or d.startswith(u + ".") for u in upper)}
            assert not bad, f"{name} imports {bad}"
        if name in {"chattts.pipeline", "chattts.passes", "chattts.models"}:
            bad = {d for d in deps if any(d == f or d.startswith(f + ".") for f in front)}
            assert not bad, f"{name} imports {bad}"


def test_no_file_over_500_lines():
    long = {
        os.fspath(p.relative_to(PACKAGE.parent)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500
    }
    assert long == {}
