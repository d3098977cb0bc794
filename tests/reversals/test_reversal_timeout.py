"""No decision within the approval timeout (the default 72 hours, skipped through on the
time-skipping test server) voids the hold and ends the case."""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack

from temporalio.testing import WorkflowEnvironment

from activities.direct import DirectPool
from activities.ledger.chart import CASH
from schemas.reversals import Stage
from schemas.settings import Settings
from tests.conftest import Factory, Sessions
from tests.reversals.conftest import balances, post, reversal_input, start
from tests.workflows.conftest import record_history
from worker import build_workers


async def test_no_decision_in_72_hours_expires_and_releases_the_hold(
    skipping_env: WorkflowEnvironment,
    settings: Settings,
    sessions: Sessions,
    direct: DirectPool,
    factory: Factory,
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
            direct,
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
