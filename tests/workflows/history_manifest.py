"""Which code each committed history was recorded with, so CI can tell that a workflow changed
and that a history of its previous code is still there to replay against the new one.

A workflow's code fingerprint is a hash of its module and of the `workflows.*` modules it imports,
as syntax trees without docstrings: a comment, a docstring or a reformat does not change it. The
manifest (`history_manifest.json`) keeps, per workflow type, the fingerprints its code has had
(oldest first) and, per history, the fingerprint it was recorded with and the file's hash.

After changing a workflow (behind `workflow.patched`, README "Deploying workflow changes"), and
recording any new histories, run

    .venv/bin/python -m tests.workflows.history_manifest

which adds the new fingerprint and notes new or re-recorded histories as recorded with it.
The fingerprints are those of released code (main): a branch that changes a workflow in several
steps keeps one new fingerprint, the last, since no workflow ever ran on the steps between. A
history renamed rather than re-recorded keeps the fingerprint it was recorded with. The
tests in test_history_coverage.py then require a history recorded with the previous code, which
test_replay.py replays against the new code.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
from pathlib import Path
from typing import Any

from temporalio.workflow import _Definition

from worker import BATCH_WORKFLOWS, INTERACTIVE_WORKFLOWS

ROOT = Path(__file__).resolve().parents[2]
HISTORIES = Path(__file__).parent / "histories"
MANIFEST = Path(__file__).parent / "history_manifest.json"
Manifest = dict[str, dict[str, Any]]


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            body[0] = ast.Pass()
    return tree


def _workflow_imports(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "workflows":
                found.update(f"workflows.{alias.name}" for alias in node.names)
            elif node.module.startswith("workflows."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("workflows."))
    return found


def fingerprint(source: Path, root: Path = ROOT) -> str:
    """The hash of a workflow module and of every workflows.* module it reaches."""
    seen: dict[str, str] = {}
    pending = [source]
    while pending:
        path = pending.pop()
        name = str(path.relative_to(root))
        if name in seen:
            continue
        tree = ast.parse(path.read_text())
        seen[name] = ast.dump(_without_docstrings(tree), include_attributes=False)
        for module in _workflow_imports(tree):
            candidate = root / (module.replace(".", "/") + ".py")
            if candidate.exists():
                pending.append(candidate)
    digest = hashlib.sha256()
    for name in sorted(seen):
        digest.update(name.encode() + b"\0" + seen[name].encode() + b"\0")
    return digest.hexdigest()[:16]


def workflow_sources() -> dict[str, Path]:
    """Workflow type -> the module that defines it, for every workflow the worker runs."""
    found = {}
    for cls in INTERACTIVE_WORKFLOWS + BATCH_WORKFLOWS:
        name = _Definition.must_from_class(cls).name
        assert name is not None
        found[name] = Path(inspect.getfile(cls)).resolve()
    return found


def recorded_histories() -> dict[str, tuple[str, str]]:
    """History name -> (its workflow type, the file's sha256)."""
    found = {}
    for path in sorted(HISTORIES.glob("*.json")):
        text = path.read_text()
        first = json.loads(text)["events"][0]["workflowExecutionStartedEventAttributes"]
        found[path.stem] = (
            first["workflowType"]["name"],
            hashlib.sha256(text.encode()).hexdigest(),
        )
    return found


def load() -> Manifest:
    loaded: Manifest = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}
    return loaded


def update(manifest: Manifest) -> Manifest:
    """The manifest after this change: current fingerprints appended, new or re-recorded
    histories noted as recorded with the current code, removed ones dropped."""
    histories = recorded_histories()
    updated: Manifest = {}
    for workflow_type, source in sorted(workflow_sources().items()):
        entry = manifest.get(workflow_type, {"versions": [], "histories": {}})
        current = fingerprint(source)
        versions = list(entry["versions"])
        if not versions or versions[-1] != current:
            versions.append(current)
        kept: dict[str, dict[str, str]] = {}
        for name, (kind, sha) in histories.items():
            if kind != workflow_type:
                continue
            known = entry["histories"].get(name)
            unchanged = known is not None and known["sha256"] == sha
            kept[name] = known if unchanged else {"code": current, "sha256": sha}
        updated[workflow_type] = {
            "module": str(source.relative_to(ROOT)),
            "versions": versions,
            "histories": kept,
        }
    return updated


def main() -> None:
    MANIFEST.write_text(json.dumps(update(load()), indent=1, sort_keys=True) + "\n")
    print(f"wrote {MANIFEST.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
