"""A loan approval on the real stack moves the approvals gauges and the notification counter on
the worker's /metrics by exactly what happened."""

from __future__ import annotations

import asyncio

from temporalio.client import Client

from activities.metrics import ApprovalsGauge
from schemas.loans import Stage
from tests.loans.conftest import LoanKit, send, start, vote
from tests.metrics_kit import Samples, scrape, value, worker_metrics

WAITING = "bankflow_approvals_waiting"
OLDEST = "bankflow_approvals_oldest_age_seconds"
LOAN = {"process": "LoanApproval", "role": "loan_officer"}


async def refreshed(gauge: ApprovalsGauge, url: str, expect: float) -> Samples:
    """Visibility is eventually consistent: refresh until the gauge shows `expect`."""
    for _ in range(100):
        await gauge.refresh()
        samples = await scrape(url)
        if value(samples, WAITING, **LOAN) == expect:
            return samples
        await asyncio.sleep(0.1)
    raise AssertionError(f"{WAITING} never showed {expect}")


async def test_a_loan_approval_moves_approvals_and_notifications(
    temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    product = await kit.product()
    officer, other = await kit.staff("loan_officer"), await kit.staff("loan_officer")
    inp = await kit.register(officer, product, await kit.member(), "800.00")
    gauge = ApprovalsGauge(temporal_client, scope=f"TaskQueue = '{worker}'")
    with worker_metrics() as url:
        before = await scrape(url)
        handle = await start(temporal_client, worker, inp)
        assert (await send(handle, "initial_outcome")).stage == Stage.AWAITING_APPROVAL
        waiting = await refreshed(gauge, url, 1)
        assert 0 < value(waiting, OLDEST, **LOAN) < 60
        state = await send(handle, "decide", vote(other, "loan_officer"))
        assert state.stage == Stage.APPROVED
        after = await refreshed(gauge, url, 0)
    assert value(after, OLDEST, **LOAN) == 0
    # one e-mail: the loan_approved notice to the member, kept in the outbox
    name = "bankflow_notifications_total"
    moved = value(after, name, outcome="stored") - value(before, name, outcome="stored")
    assert moved == 1
    failures = "bankflow_activity_failures_total"
    assert sum(v for (n, _), v in after.items() if n == failures) == sum(
        v for (n, _), v in before.items() if n == failures
    )
