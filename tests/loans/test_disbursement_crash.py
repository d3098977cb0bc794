"""A worker process SIGKILLed while its payout is in flight at the rail, and another started:
the saga finishes with one disbursement journal, one payout journal and one payout at the rail
(the retried request carries the same Idempotency-Key), and the ledger verifies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client

from schemas.settings import Settings
from tests.loans.conftest import LoanKit
from tests.loans.disbursement_kit import BANK, Books, approved_loan, saga_input, start_saga
from tests.loans.fake_rail import running_rail

ROOT = Path(__file__).resolve().parents[2]


def worker_process(
    settings: Settings, client: Client, queue: str, rail: str
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "BANKFLOW_DATABASE_URL": settings.database_url,
        "BANKFLOW_TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "BANKFLOW_INTERACTIVE_TASK_QUEUE": queue,
        "BANKFLOW_BATCH_TASK_QUEUE": f"{queue}-batch",
        "BANKFLOW_PAYMENT_RAIL_URL": rail,
    }
    return subprocess.Popen(
        [sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL
    )


async def test_worker_killed_mid_payout_pays_out_once(
    temporal_client: Client, worker: str, kit: LoanKit, settings: Settings
) -> None:
    books = Books(kit)
    loan = await approved_loan(kit, temporal_client, worker)
    queue = f"tq-crash-{uuid.uuid4().hex[:10]}"
    inp = saga_input(
        loan,
        destination="external",
        external_account=BANK,
        payout_attempt_timeout=timedelta(seconds=4),
        payout_timeout=timedelta(minutes=2),
    )
    with running_rail("accept") as rail:
        rail.delay_s = 30  # the rail takes the payout at once and answers late: "in flight"
        first = worker_process(settings, temporal_client, queue, rail.url)
        try:
            handle = await start_saga(temporal_client, queue, inp)
            assert await asyncio.to_thread(rail.received.wait, 60), "no payout request"
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            rail.delay_s = 0  # the rail answers promptly from now on
            second = worker_process(settings, temporal_client, queue, rail.url)
            try:
                state = await asyncio.wait_for(handle.result(), 120)
            finally:
                second.terminate()
                second.wait(60)
        finally:
            if first.poll() is None:
                first.kill()
    assert state.status == "completed", state
    assert len(rail.payouts) == 1 and len(rail.requests) >= 2
    assert {r["key"] for r in rail.requests} == {handle.id}
    assert state.payout_reference == rail.payouts[handle.id]["reference"]
    assert await books.count_journals(handle.id, "loan_disbursement") == 1
    assert await books.count_journals(handle.id, "loan_payout") == 1
    (d,) = await books.disbursements(loan.inp.loan_id)
    assert (d.status, d.payout_reference) == ("completed", state.payout_reference)
    assert (await kit.loan(loan.inp.loan_id)).state == "active"
    assert await books.verified()
