"""LedgerVerify on the batch task queue: a clean ledger passes."""

from __future__ import annotations

import uuid

from temporalio.client import Client

from tests.conftest import Factory
from tests.workflows.conftest import record_history
from workflows.ledger_verify import LedgerVerifyWorkflow


async def test_ledger_verify_workflow_reports_every_check(
    temporal_client: Client, worker: str, factory: Factory
) -> None:
    await factory.savings_account(10_00)
    handle = await temporal_client.start_workflow(
        LedgerVerifyWorkflow.run,
        id=f"ledger-verify-{uuid.uuid4().hex[:8]}",
        task_queue=f"{worker}-batch",
    )
    report = await handle.result()
    assert report.ok
    assert len(report.checks) >= 9 and all(c.ok for c in report.checks)
    await record_history(handle, "ledger_verify")
