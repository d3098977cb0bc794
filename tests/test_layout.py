"""The layout rules of STYLE.md and the README's architecture map, checked on the source itself.

Each rule reads the project's Python files with `ast` (nothing is imported), so a breach names
the file and line that broke it.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from activities.tables import Base

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("activities", "api", "cli", "domain", "schemas", "workflows")
# Code modules the size rule covers: the packages, the worker, the launcher scripts and the
# benches. Migrations are history, and test modules are lists of cases, not code to read at once.
SIZED = (*PACKAGES, "scripts", "bench")
MAX_LINES = 400
STDLIB = sys.stdlib_module_names


@dataclass(frozen=True)
class Import:
    module: str  # the module (or package) imported, resolved to a dotted name
    line: int


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _project_files() -> list[Path]:
    files = [ROOT / "worker.py"]
    for package in PACKAGES:
        files += sorted((ROOT / package).rglob("*.py"))
    return files


MODULES = {_module_name(p): p for p in _project_files()}


def _imports(path: Path) -> Iterator[Import]:
    """Every import in the file, wherever it is (a function-local import is still an edge),
    resolved to project modules where `from package import module` names a module."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                yield Import(sub if sub in MODULES else node.module, node.lineno)


def _top(module: str) -> str:
    return module.split(".")[0]


def test_routes_run_no_sql_and_import_no_other_route() -> None:
    breaches = []
    for path in sorted((ROOT / "api" / "routes").glob("*.py")):
        for imp in _imports(path):
            if _top(imp.module) == "sqlalchemy" or imp.module.startswith("activities.tables"):
                breaches.append(f"{path.name}:{imp.line} imports {imp.module}")
            if path.name != "__init__.py" and imp.module.startswith("api.routes."):
                breaches.append(f"{path.name}:{imp.line} imports the route {imp.module}")
    assert not breaches, "routes read and write through activities/, share through api/deps.py"


def test_nothing_outside_the_routes_package_imports_a_route() -> None:
    breaches = [
        f"{name}:{imp.line} imports {imp.module}"
        for name, path in MODULES.items()
        if not name.startswith("api.routes") and name != "api.app"
        for imp in _imports(path)
        if imp.module.startswith("api.routes.")
    ]
    assert not breaches


def test_workflows_import_only_activity_references_and_pure_code() -> None:
    """Workflow code is replayed: it may import temporalio, the standard library, pydantic,
    schemas, domain and other workflows, and from activities only the `*Activities` classes
    whose methods it calls by reference."""
    # email_validator and idna: pure, passed through whole for NotificationRequest's EmailStr.
    allowed = {
        "temporalio",
        "pydantic",
        "email_validator",
        "idna",
        "workflows",
        "schemas",
        "domain",
    }
    breaches = []
    for path in sorted((ROOT / "workflows").glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("activities")
            ):
                wrong = [a.name for a in node.names if not a.name.endswith("Activities")]
                if wrong:
                    breaches.append(f"{path.name}:{node.lineno} imports {wrong} from activities")
                continue
        for imp in _imports(path):
            top = _top(imp.module)
            if top not in allowed and top not in STDLIB and top != "activities":
                breaches.append(f"{path.name}:{imp.line} imports {imp.module}")
    assert not breaches


def test_domain_imports_no_io_library() -> None:
    breaches = [
        f"{name}:{imp.line} imports {imp.module}"
        for name, path in MODULES.items()
        if name.startswith("domain")
        for imp in _imports(path)
        if _top(imp.module) not in STDLIB and _top(imp.module) != "domain"
    ]
    assert not breaches, "domain/ is pure calculators over plain values"


def test_tables_live_in_one_package() -> None:
    defined_elsewhere = []
    for name, path in MODULES.items():
        if name.startswith("activities.tables"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__tablename__" for t in node.targets
            ):
                defined_elsewhere.append(f"{name}:{node.lineno}")
    assert not defined_elsewhere
    mapped = {m.class_.__module__ for m in Base.registry.mappers}
    assert mapped and all(m.startswith("activities.tables.") for m in mapped), mapped


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_among_project_modules() -> None:
    """A package's `__init__` importing its own modules is not a cycle (Python loads a
    package before its modules); any other loop is."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for imp in _imports(path):
            target = imp.module
            while target not in MODULES and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in MODULES and target != name and not name.startswith(target + "."):
                graph[name].add(target)
    assert _cycles(graph) == []


def test_the_cycle_check_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _sized_files() -> list[Path]:
    files = [ROOT / "worker.py"]
    for top in SIZED:
        files += sorted((ROOT / top).rglob("*.py"))
    return files


@pytest.mark.parametrize("path", _sized_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_over_400_lines(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{lines} lines: split it along its responsibilities"
