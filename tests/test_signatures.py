"""Public signatures say what they take: a bare ``Any`` only where no real type exists, at
most 15 of them, each with its reason in a comment (``# Any: ...``) on the signature."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "chattts"
LIMIT = 15


def _bare_any(node: ast.expr | None) -> bool:
    """``Any`` or ``Optional[Any]`` (not ``dict[str, Any]``: JSON values have no other type)."""
    if isinstance(node, ast.Name):
        return node.id == "Any"
    if isinstance(node, ast.Constant):
        return node.value == "Any"
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        return node.value.id == "Optional" and _bare_any(node.slice)
    return False


def _public(name: str) -> bool:
    return not name.startswith("_") or name == "__init__"


def bare_any_signatures(source: str, where: str) -> dict[str, bool]:
    """``{"where:line:function": has a reason comment}`` for each public function or method
    (of a public class) with a bare ``Any`` parameter or return."""
    lines = source.splitlines()
    found: dict[str, bool] = {}

    def visit(node: ast.AST, public: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, public and _public(child.name))
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if not (public and _public(child.name)):
                    continue
                a = child.args
                args = [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]
                annotations = [x.annotation for x in args if x is not None] + [child.returns]
                if any(_bare_any(x) for x in annotations):
                    head = lines[child.lineno - 1 : child.body[0].lineno - 1]
                    found[f"{where}:{child.lineno}:{child.name}"] = any("# Any:" in x for x in head)

    visit(ast.parse(source), True)
    return found


def package_signatures() -> dict[str, bool]:
    out: dict[str, bool] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent)
        if any(p.startswith("_") and p not in ("__init__.py", "__main__.py") for p in rel.parts):
            continue
        out.update(bare_any_signatures(path.read_text(encoding="utf-8"), str(rel)))
    return out


def test_at_most_fifteen_bare_any_in_public_signatures_each_with_its_reason():
    found = package_signatures()
    assert len(found) <= LIMIT, sorted(found)
    assert [k for k, reason in found.items() if not reason] == []


def test_the_counter_sees_bare_any_and_its_reason():
    source = (
        "from typing import Any, Optional\n"
        "def a(x: Any) -> None: ...\n"
        "def b(x: dict[str, Any]) -> Optional[Any]:  # Any: a plugin's object\n"
        "    pass\n"
        "def _c(x: Any) -> None: ...\n"
        "class D:\n"
        "    def e(self, **kw: Any) -> int: ...\n"
        "class _E:\n"
        "    def f(self, x: Any) -> None: ...\n"
    )
    assert bare_any_signatures(source, "m") == {"m:2:a": False, "m:3:b": True, "m:7:e": False}
