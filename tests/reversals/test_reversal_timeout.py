"""No decision within the approval timeout (the default 72 hours, skipped through on the
time-skipping test server) voids the hold and ends the case."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.setup import CASH
from schemas import search_attributes
from schemas.reversals import Stage
from schemas.settings import Settings
from tests.conftest import Factory, Sessions
from tests.reversals.conftest import balances, post, reversal_input, start
from tests.workflows.conftest import record_history
from worker import build_workers


@pytest.fixture(scope="module")
async def skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    binary = Path(sys.executable).parent / "temporal-test-server"
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=str(binary)
    )
    # The test server knows no search attributes until told; the workflow upserts ours.
    kinds = {
        key.name: IndexedValueType.INDEXED_VALUE_TYPE_INT
        if key.name == search_attributes.AMOUNT_MINOR.name
        else IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
        for key in search_attributes.ALL
    }
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(namespace=env.client.namespace, search_attributes=kinds)
    )
    yield env
    await env.shutdown()


async def test_no_decision_in_72_hours_expires_and_releases_the_hold(
    skipping_env: WorkflowEnvironment, settings: Settings, sessions: Sessions, factory: Factory
) -> None:
    acc = await factory.savings_account()
    original = await post(sessions, "deposit", (factory.gl(CASH.number), acc.id, 90_00))
    queue = f"tq-skip-{uuid.uuid4().hex[:8]}"
    inp = reversal_input(original.journal_id)
    assert inp.approval_timeout.total_seconds() == 72 * 3600
    async with AsyncExitStack() as stack:
        for w in build_workers(
            skipping_env.client,
            settings,
            sessions,
            interactive_queue=queue,
            batch_queue=queue + "b",
        ):
            await stack.enter_async_context(w)
        handle = await start(skipping_env.client, queue, inp)
        result = await handle.result()  # the server skips the 72 hours
    assert result.stage == Stage.EXPIRED and result.reversal_journal_id is None
    assert result.history[-1].at - result.history[0].at >= inp.approval_timeout
    assert await balances(factory, acc.id) == (90_00, 0)
    await record_history(handle, "reversal_expired")
