"""The end-of-run check of every process on the Temporal server: each one has completed, or runs
in a stage where it waits for a person, and a loan that waits, waits where the books say."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus

from bench.chaos.books import LoanBook
from schemas import search_attributes as sa

# Stages in which a running process waits for a person (or for a timer measured in days).
WAITING = frozenset(
    {
        "awaiting_approval",
        "awaiting_guarantors",
        "approved",
        "returned_for_changes",
        "awaiting_review",
    }
)
ENDED = frozenset({WorkflowExecutionStatus.COMPLETED, WorkflowExecutionStatus.CONTINUED_AS_NEW})


@dataclass
class ProcessReport:
    counts: Counter[str] = field(default_factory=Counter)
    wrong: list[str] = field(default_factory=list)


def judge(wf: WorkflowExecution, loans: dict[str, LoanBook]) -> str | None:
    """None if the process is where it should be; else why not."""
    if wf.status in ENDED:
        return None
    stage = wf.typed_search_attributes.get(sa.STAGE)
    status = wf.status.name.lower() if wf.status else "unknown"
    if wf.status != WorkflowExecutionStatus.RUNNING:
        return f"{wf.workflow_type} {wf.id} is {status}"
    if stage not in WAITING:
        return f"{wf.workflow_type} {wf.id} still running in stage {stage}"
    loan = loans.get(wf.typed_search_attributes.get(sa.BUSINESS_ID) or "")
    if wf.workflow_type == "LoanApproval" and loan is not None and loan.stage != stage:
        return f"{wf.id} waits in {stage}, books say {loan.stage}"
    return None


async def check(address: str, loans: dict[str, LoanBook], settle_s: float) -> ProcessReport:
    """Give busy processes up to `settle_s` to reach their end or a wait, then judge them all."""
    client = await Client.connect(address)
    deadline = time.monotonic() + settle_s
    while True:
        report = ProcessReport()
        async for wf in client.list_workflows():
            report.counts[f"{wf.workflow_type} {wf.status.name.lower() if wf.status else '?'}"] += 1
            why = judge(wf, loans)
            if why is not None:
                report.wrong.append(why)
        if not report.wrong or time.monotonic() > deadline:
            return report
        await asyncio.sleep(2)
