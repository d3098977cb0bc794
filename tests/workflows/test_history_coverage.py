"""CI's deploy check: a workflow whose code changed must still have a history recorded with its
previous code, which test_replay.py replays against the new code. Without it a change that breaks
running workflows (a loan three weeks into its approval) could pass every other test."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.workflows import history_manifest as hm

FIX = "run `.venv/bin/python -m tests.workflows.history_manifest` (see its docstring)"


def uncovered(manifest: dict[str, dict[str, Any]]) -> list[str]:
    """Workflow types changed since their last version without a history of the old code."""
    problems = []
    for workflow_type, entry in manifest.items():
        versions = entry["versions"]
        codes = {h["code"] for h in entry["histories"].values()}
        if len(versions) > 1 and versions[-2] not in codes:
            problems.append(
                f"{workflow_type}: changed, but no history recorded with its previous code "
                f"remains (re-recorded or removed); keep one, recorded before the change"
            )
        if not entry["histories"]:
            problems.append(f"{workflow_type}: no recorded history at all")
    return problems


def test_the_manifest_knows_the_current_code_and_every_history() -> None:
    """Fails on a changed workflow module until the change is declared with the tool, which
    is when the check below applies."""
    assert hm.load() == hm.update(hm.load()), f"workflow code or histories changed: {FIX}"


def test_every_changed_workflow_keeps_a_history_of_its_previous_code() -> None:
    assert uncovered(hm.load()) == []


def test_the_check_catches_a_change_whose_old_histories_were_all_rerecorded() -> None:
    """The two checks above can fail: a new fingerprint with every history re-recorded on the
    new code (what `update` makes of it) is refused; keeping one old history passes."""
    old, new = "a" * 16, "b" * 16
    before = {"histories": {"one": {"code": old}, "two": {"code": old}}, "versions": [old]}
    assert uncovered({"LoanApproval": before}) == []
    rerecorded = {
        "versions": [old, new],
        "histories": {"one": {"code": new}, "two": {"code": new}},
    }
    assert uncovered({"LoanApproval": rerecorded}) != []
    keep_one = {**rerecorded, "histories": {"one": {"code": old}, "two": {"code": new}}}
    assert uncovered({"LoanApproval": keep_one}) == []
    assert uncovered({"LoanApproval": {"versions": [old], "histories": {}}}) != []


def test_a_comment_or_docstring_does_not_change_the_fingerprint(tmp_path: Path) -> None:
    shutil.copytree(hm.ROOT / "workflows", tmp_path / "workflows")
    source = tmp_path / "workflows/money_movement.py"
    text = source.read_text()
    before = hm.fingerprint(source, tmp_path)
    assert before == hm.fingerprint(hm.workflow_sources()["MoneyMovement"])
    source.write_text(text.replace('"""', '"""Reworded. ', 1) + "\n# a comment\n")
    assert hm.fingerprint(source, tmp_path) == before
    source.write_text(text + "\nGRACE = 1\n")
    assert hm.fingerprint(source, tmp_path) != before
    source.write_text(text)
    (tmp_path / "workflows/common.py").write_text("CHANGED = 1\n")  # a module it imports
    assert hm.fingerprint(source, tmp_path) != before
