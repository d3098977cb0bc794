"""Workers for workflow tests: the production worker definition on a fresh task queue."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowHandle

from activities.ledger import LedgerActivities
from schemas.settings import Settings
from worker import build_workers

HISTORIES = Path(__file__).parent / "histories"


@pytest.fixture
async def worker(
    temporal_client: Client,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    task_queue: str,
) -> AsyncIterator[str]:
    """Runs the real workers on this test's task queue; yields the interactive queue name."""
    workers = build_workers(
        temporal_client,
        settings,
        LedgerActivities(sessions),
        interactive_queue=task_queue,
        batch_queue=f"{task_queue}-batch",
    )
    async with AsyncExitStack() as stack:
        for w in workers:
            await stack.enter_async_context(w)
        yield task_queue


async def record_history(handle: WorkflowHandle[object, object], name: str) -> None:
    """Save a finished workflow's history for the replay tests when BANKFLOW_RECORD_HISTORIES=1.

    Recorded histories are committed; CI replays them against the current workflow code, so a
    change that breaks determinism for running workflows fails the build.
    """
    if not os.environ.get("BANKFLOW_RECORD_HISTORIES"):
        return
    history = await handle.fetch_history()
    HISTORIES.mkdir(exist_ok=True)
    (HISTORIES / f"{name}.json").write_text(json.dumps(json.loads(history.to_json()), indent=1))
