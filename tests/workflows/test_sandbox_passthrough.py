"""Workflow modules are passed through the sandbox (worker.PASSTHROUGH): every run shares one copy
of their globals and classes instead of importing its own. That is only safe while no run can
change them, which these tests hold the code to: no `global` or `nonlocal`, no mutable value in
a class body (shared by every instance of every run), and no module-level dict, list or set that
any code of the package mutates."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from worker import BATCH_WORKFLOWS, INTERACTIVE_WORKFLOWS, PASSTHROUGH

PACKAGE = Path(__file__).resolve().parents[2] / "workflows"
MUTABLE = (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)
MUTATORS = {
    "append", "extend", "insert", "pop", "remove", "clear", "update", "setdefault", "add",
    "discard", "popitem", "sort", "reverse", "__setitem__", "__delitem__",
}  # fmt: skip
FACTORIES = {"dict", "list", "set", "defaultdict", "deque", "OrderedDict", "Counter", "bytearray"}


def _mutable(value: ast.expr | None) -> bool:
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
        return value.func.id in FACTORIES
    return isinstance(value, MUTABLE)


def _assigned(node: ast.stmt) -> tuple[list[ast.expr], ast.expr | None]:
    if isinstance(node, ast.Assign):
        return node.targets, node.value
    if isinstance(node, ast.AnnAssign):
        return [node.target], node.value
    return [], None


def shared_mutables(tree: ast.Module) -> tuple[set[str], list[str]]:
    """Module-level names bound to a mutable display, and what a class body binds to one."""
    names: set[str] = set()
    problems: list[str] = []
    for node in tree.body:
        targets, value = _assigned(node)
        if _mutable(value):
            names.update(t.id for t in targets if isinstance(t, ast.Name) and t.id != "__all__")
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                targets, value = _assigned(item)
                if _mutable(value):
                    problems.append(f"class {node.name} binds a mutable {ast.unparse(item)[:60]}")
    return names, problems


def _root(expr: ast.expr) -> str | None:
    while isinstance(expr, ast.Subscript | ast.Attribute):
        expr = expr.value
    return expr.id if isinstance(expr, ast.Name) else None


def mutations(tree: ast.Module, names: set[str]) -> list[str]:
    """Where the code rebinds module state or changes one of `names` in place."""
    found: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.stmt | ast.expr):
            continue
        if isinstance(node, ast.Global | ast.Nonlocal):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign | ast.Delete):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            changed = isinstance(target, ast.Subscript | ast.Attribute) or isinstance(
                node, ast.AugAssign
            )
            if changed and _root(target) in names:
                found.append(f"line {node.lineno}: {ast.unparse(node)[:60]}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in MUTATORS
            and _root(node.func.value) in names
        ):
            found.append(f"line {node.lineno}: {ast.unparse(node)[:60]}")
    return found


def violations(sources: dict[str, str]) -> list[str]:
    trees = {name: ast.parse(source) for name, source in sources.items()}
    names: set[str] = set()
    problems: list[str] = []
    for name, tree in trees.items():
        found, in_classes = shared_mutables(tree)
        names |= found  # imported under the same name elsewhere in the package
        problems += [f"{name}: {p}" for p in in_classes]
    for name, tree in trees.items():
        problems += [f"{name}: {p}" for p in mutations(tree, names)]
    return problems


def test_every_workflow_is_passed_through() -> None:
    for cls in INTERACTIVE_WORKFLOWS + BATCH_WORKFLOWS:
        assert any(
            cls.__module__ == m or cls.__module__.startswith(m + ".") for m in PASSTHROUGH
        ), f"{cls.__name__} lives in {cls.__module__}, which the sandbox re-imports per run"


def test_workflow_modules_hold_no_state_a_run_could_change() -> None:
    sources = {p.name: p.read_text() for p in sorted(PACKAGE.rglob("*.py"))}
    assert len(sources) > 10
    assert violations(sources) == []


@pytest.mark.parametrize(
    "source",
    [
        "SEEN: dict[str, int] = {}\ndef f(k):\n    SEEN[k] = 1\n",
        "SEEN = []\ndef f(k):\n    SEEN.append(k)\n",
        "OPTS = {'a': 1}\ndef f():\n    OPTS['a'] += 1\n",
        "N = 0\ndef f():\n    global N\n    N = 1\n",
        "class W:\n    pending: list[int] = []\n",
        "SEEN = set()\ndef f():\n    SEEN.add(2)\n",
        "BY_ID = dict()\ndef f():\n    del BY_ID[1]\n",
    ],
)
def test_the_check_finds_shared_state(source: str) -> None:
    assert violations({"w.py": source})


def test_the_check_follows_a_name_imported_from_another_module() -> None:
    sources = {
        "common.py": "DB = {'timeout': 10}\n",
        "flow.py": "from common import DB\ndef f():\n    DB['timeout'] = 5\n",
    }
    assert violations(sources) == ["flow.py: line 3: DB['timeout'] = 5"]
