"""A worker SIGKILLed in the middle of month-end, and another started: the run completes with
the same totals as an uninterrupted run on identical data, no account posted twice, and the
ledger's invariants intact."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from activities.db import in_transaction
from activities.seed.synthetic import seed_synthetic_accounts
from schemas.month_end import MonthEndSummary
from tests.month_end.conftest import Stack
from workflows.month_end_interest import MonthEndInterestWorkflow

ROOT = Path(__file__).resolve().parents[2]
PERIOD = "2026-10"
TERMS = {"annual_rate": "0.0365", "withholding_tax_rate": "0.15", "min_balance": "10.00"}


async def seed(stack: Stack, count: int) -> None:
    product = await stack.product(**TERMS)

    async def work(session: AsyncSession) -> tuple[int, int]:
        return await seed_synthetic_accounts(
            session, tag="K", count=count, product_code=product, period_start=date(2026, 10, 1)
        )

    await in_transaction(stack.sessions, work)


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


async def killed_midway(stack: Stack, client: Client, count: int, batch: int) -> MonthEndSummary:
    first = start_worker(stack, client)
    try:
        handle = await stack.start(PERIOD, batch_size=batch, concurrency=2, heartbeat_s=3)
        done = 0
        while done < count // 4:  # a quarter posted: the kill lands mid-run, mid-batch likely
            await asyncio.sleep(0.05)
            try:
                done = (await handle.query(MonthEndInterestWorkflow.progress)).accounts_done
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


async def check_crash_recovery(stack: Stack, bare_stack: Stack, count: int, batch: int) -> None:
    await seed(stack, count)
    await seed(bare_stack, count)
    reference = await stack.run(PERIOD, batch_size=batch)
    recovered = await killed_midway(bare_stack, stack.client, count, batch)
    assert recovered.accounts == reference.accounts == count
    assert recovered.totals == reference.totals
    # one interest row per account, and no account credited interest twice
    assert await bare_stack.scalar(
        "SELECT count(*) FROM interest_postings WHERE period = :p", p=PERIOD
    ) == count  # fmt: skip
    assert await bare_stack.scalar(
        "SELECT count(*) FROM (SELECT p.credit_account_id FROM postings p "
        "JOIN journals j ON j.id = p.journal_id JOIN savings_accounts s "
        "ON s.account_id = p.credit_account_id WHERE j.kind = 'interest' "
        "GROUP BY 1 HAVING count(*) > 1) x"
    ) == 0  # fmt: skip
    assert (await bare_stack.verify()).ok
    assert (await stack.verify()).ok


async def test_worker_killed_midway_finishes_once(stack: Stack, bare_stack: Stack) -> None:
    await check_crash_recovery(stack, bare_stack, count=1200, batch=40)


@pytest.mark.slow
async def test_worker_killed_midway_at_scale(stack: Stack, bare_stack: Stack) -> None:
    await check_crash_recovery(stack, bare_stack, count=60000, batch=1000)
