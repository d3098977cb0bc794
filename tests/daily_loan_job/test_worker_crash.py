"""A worker SIGKILLed in the middle of the daily loan job, and another started: the run completes
with the same books as an uninterrupted run on identical data, no loan serviced twice, and the
ledger's invariants intact."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from activities.db import in_transaction
from schemas.daily_loan_job import DailyJobSummary
from tests.daily_loan_job.conftest import Stack
from tests.daily_loan_job.seed import clone_loans
from workflows.daily_loan_job import DailyLoanJobWorkflow

ROOT = Path(__file__).resolve().parents[2]
DAY = date(2026, 4, 20)


async def seed(stack: Stack, copies: int) -> int:
    """Copies of an accrual loan months in arrears and of a current cash loan."""
    accrual = await stack.product(penalty_rate="36.5", accounting="accrual")
    cash = await stack.product(penalty_rate="20", accounting="cash")
    templates = [
        await stack.active_loan(accrual, date(2026, 2, 15)),
        await stack.active_loan(cash, date(2026, 4, 1), principal="700.00", repayments=4),
    ]
    for n, template in enumerate(templates):

        async def work(session: AsyncSession, t: int = template, n: int = n) -> int:
            return await clone_loans(session, t, copies, f"K{n}")

        await in_transaction(stack.sessions, work)
    return 2 + 2 * copies


def start_worker(stack: Stack, client: Client) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "BANKFLOW_DATABASE_URL": stack.settings.database_url,
        "BANKFLOW_TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "BANKFLOW_INTERACTIVE_TASK_QUEUE": f"{stack.batch_queue}-interactive",
        "BANKFLOW_BATCH_TASK_QUEUE": stack.batch_queue,
    }
    return subprocess.Popen(
        [sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL
    )


async def killed_midway(stack: Stack, client: Client, count: int, batch: int) -> DailyJobSummary:
    first = start_worker(stack, client)
    try:
        # A short workflow task timeout: the task the dead worker held is retried in 2 s, not 10.
        handle = await stack.start(
            DAY, task_timeout=timedelta(seconds=2), batch_size=batch, concurrency=2, heartbeat_s=3
        )
        done = 0
        while done < count // 4:  # a quarter serviced: the kill lands mid-run, mid-batch likely
            await asyncio.sleep(0.05)
            try:
                done = (await handle.query(DailyLoanJobWorkflow.progress)).loans_done
            except Exception:  # not yet picked up by the worker
                done = 0
        assert done < count, "the run finished before the kill"
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second = start_worker(stack, client)
        try:
            return await asyncio.wait_for(handle.result(), 300)
        finally:
            second.terminate()
            second.wait(60)
    finally:
        if first.poll() is None:
            first.kill()


@pytest.mark.slow  # about 23 s: two worker processes start, and the dead one's tasks time out
async def test_worker_killed_midway_finishes_once(stack: Stack, bare_stack: Stack) -> None:
    count = await seed(stack, 400)
    assert await seed(bare_stack, 400) == count
    reference = await stack.run(DAY, batch_size=20)
    recovered = await killed_midway(bare_stack, stack.client, count, batch=20)
    assert recovered.loans == reference.loans == count
    assert (recovered.penalty_minor, recovered.accrual_minor) == (
        reference.penalty_minor,
        reference.accrual_minor,
    )
    assert recovered.accrual_minor["USD"] > 0 and recovered.penalty_minor["USD"] > 0
    assert await bare_stack.books() == await stack.books()
    # every loan serviced through the day, and at most one accrual and one penalty row each
    assert await bare_stack.scalar(
        "SELECT count(*) FROM loans WHERE serviced_through = :d", d=DAY
    ) == count  # fmt: skip
    assert await bare_stack.scalar(
        "SELECT count(*) FROM (SELECT loan_id, kind FROM loan_transactions "
        "WHERE kind IN ('penalty', 'accrual') GROUP BY 1, 2 HAVING count(*) > 1) x"
    ) == 0  # fmt: skip
    await bare_stack.verify()
    await stack.verify()
