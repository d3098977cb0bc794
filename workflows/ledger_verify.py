"""LedgerVerify: the nightly proof that the ledger's invariants hold, on the batch task queue.

Operations schedule it (or run `bankflow ledger verify` by hand); a breach fails the workflow so
it shows red in the Temporal UI instead of passing quietly.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.ledger import LedgerActivities
    from schemas.ledger import VerifyReport


@workflow.defn(name="LedgerVerify")
class LedgerVerifyWorkflow:
    @workflow.run
    async def run(self) -> VerifyReport:
        report = await workflow.execute_activity_method(
            LedgerActivities.verify_ledger, start_to_close_timeout=timedelta(hours=1)
        )
        if not report.ok:
            breached = "; ".join(f"{c.name}: {c.detail}" for c in report.checks if not c.ok)
            raise ApplicationError(
                f"ledger invariants breached: {breached}",
                report,
                type="LedgerBreach",
                non_retryable=True,
            )
        return report
