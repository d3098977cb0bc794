"""Replay every committed workflow history against the current code with the production data
converter: a change that would break running workflows (non-determinism) fails here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.workflow import _Definition

from schemas import temporal
from schemas.settings import Settings
from worker import BATCH_WORKFLOWS, INTERACTIVE_WORKFLOWS

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
HISTORY_TEXT = {p: p.read_text() for p in HISTORIES}


def workflow_name(cls: type) -> str:
    definition = _Definition.must_from_class(cls)
    assert definition.name is not None
    return definition.name


def test_every_workflow_type_has_recorded_histories() -> None:
    recorded = {
        json.loads(HISTORY_TEXT[p])["events"][0]["workflowExecutionStartedEventAttributes"][
            "workflowType"
        ]["name"]
        for p in HISTORIES
    }
    defined = {workflow_name(w) for w in INTERACTIVE_WORKFLOWS + BATCH_WORKFLOWS}
    assert defined <= recorded, f"no recorded history for {defined - recorded}"


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_replay(path: Path) -> None:
    replayer = Replayer(
        workflows=INTERACTIVE_WORKFLOWS + BATCH_WORKFLOWS,
        data_converter=temporal.data_converter(Settings()),
    )
    history = WorkflowHistory.from_json(path.stem, json.loads(HISTORY_TEXT[path]))
    await replayer.replay_workflow(history)
