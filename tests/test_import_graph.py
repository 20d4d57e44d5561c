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
    assert "chattts.pipeline" in g and "chattts.chat.facade" in g
    assert "chattts.pipeline" in g["chattts.chat.facade"]
    assert "chattts.pipeline.passes" in g["chattts.pipeline.core"]


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


#: The floors of the package (docs/architecture.md, "Layers"): a module imports only from lower
#: floors, or from inside its own top-level package. Every module must be listed.
FLOORS: dict[str, int] = {
    "chattts.errors": 0,
    "chattts.options": 1,
    "chattts.params": 1,
    "chattts.runtime": 1,
    "chattts.config": 2,
    "chattts.assets": 3,
    "chattts.captions": 3,
    "chattts.validation": 4,
    "chattts.audio": 4,
    "chattts.text": 4,
    "chattts.model": 4,
    "chattts.voices": 5,
    "chattts.ssml": 6,
    "chattts.generation": 5,
    "chattts.testing": 6,
    "chattts.decode": 6,
    "chattts.pipeline": 7,
    "chattts.dia": 8,
    "chattts.chat": 9,
    "chattts.narrate": 10,
    "chattts.cli": 11,
    "chattts.server": 12,
    "chattts.webui": 12,
    "chattts": 13,
    "chattts.__main__": 13,
}


def floor_of(module: str) -> tuple[str, int]:
    """(the top-level unit ``module`` belongs to, its floor)."""
    parts = module.split(".")
    unit = ".".join(parts[:2])
    assert unit in FLOORS, f"{unit} has no floor in FLOORS (add it, and to docs/architecture.md)"
    return unit, FLOORS[unit]


def test_every_package_imports_only_lower_floors():
    g = graph()
    for name, deps in g.items():
        unit, floor = floor_of(name)
        for dep in deps:
            dep_unit, dep_floor = floor_of(dep)
            if dep_unit != unit and unit != "chattts":
                assert dep_floor < floor, f"{name} (floor {floor}) imports {dep} ({dep_floor})"


def test_model_modules_know_no_prompts_or_requests():
    """torch modules and the GPT's loop import nothing of text, voices, prompts or requests."""
    g = graph()
    for name, deps in g.items():
        if name.startswith(("chattts.model", "chattts.generation")):
            allowed = ("chattts.model", "chattts.generation", "chattts.config", "chattts.errors")
            allowed += ("chattts.options", "chattts.assets", "chattts.runtime")
            bad = {d for d in deps if not d.startswith(allowed)}
            assert not bad, f"{name} imports {bad}"


def test_at_most_twelve_modules_at_the_top():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 12, top


def test_no_file_over_500_lines():
    long = {
        os.fspath(p.relative_to(PACKAGE.parent)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500
    }
    assert long == {}


def test_no_function_over_80_lines():
    long = {}
    for p in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long[f"{p.relative_to(PACKAGE.parent)}:{node.name}"] = n
    assert long == {}
