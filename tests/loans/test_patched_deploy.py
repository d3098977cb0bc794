"""Deploying a change to LoanApproval while loans wait (README, Deploying workflow changes).

The change here is a test branch of the code: after approval the workflow records one more loan
event ("approval_confirmed"). Behind `workflow.patched`, a history recorded by the old code still
replays, and a loan that was waiting for its approver when the old worker stopped completes on
the new worker (and, having not yet reached that point, takes the new step). The same change made
without the patch breaks the replay: that is what the rule protects against.
"""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack

import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer, Worker
from temporalio.workflow import NondeterminismError

from activities.direct import DirectPool
from schemas import temporal
from schemas.loans import Stage
from schemas.settings import Settings
from tests.conftest import Sessions
from tests.loans.conftest import LoanKit, send, start, vote
from tests.loans.patched_loan_approval import CONFIRMED, PatchedLoanApproval, UnpatchedLoanApproval
from worker import BATCH_WORKFLOWS, INTERACTIVE_WORKFLOWS, activities_for, interceptors
from workflows.loan_approval import LoanApprovalWorkflow


def with_new(cls: type) -> list[type]:
    return [cls if w is LoanApprovalWorkflow else w for w in INTERACTIVE_WORKFLOWS]


def replayer(cls: type) -> Replayer:
    return Replayer(
        workflows=with_new(cls) + BATCH_WORKFLOWS,
        data_converter=temporal.data_converter(Settings()),
    )


async def run_worker(
    stack: AsyncExitStack,
    client: Client,
    settings: Settings,
    sessions: Sessions,
    queue: str,
    loan_approval: type,
) -> Worker:
    direct = await stack.enter_async_context(DirectPool(settings.sqlalchemy_url, size=2))
    worker = Worker(
        client,
        task_queue=queue,
        workflows=with_new(loan_approval),
        activities=activities_for(settings, sessions, direct).interactive,
        interceptors=interceptors(settings),
    )
    await stack.enter_async_context(worker)
    return worker


async def test_a_patched_change_replays_old_histories_and_completes_a_waiting_loan(
    temporal_client: Client, settings: Settings, sessions: Sessions, kit: LoanKit
) -> None:
    queue = f"tq-deploy-{uuid.uuid4().hex[:8]}"
    product = await kit.product()
    officer, approver = await kit.staff("loan_officer"), await kit.staff("loan_officer")
    waiting = await kit.register(officer, product, await kit.member(), "800.00")

    # the old release: a loan reaches its approver and waits (for weeks, in real life)
    async with AsyncExitStack() as old:
        await run_worker(old, temporal_client, settings, sessions, queue, LoanApprovalWorkflow)
        handle = await start(temporal_client, queue, waiting)
        assert (await send(handle, "initial_outcome")).stage == Stage.AWAITING_APPROVAL
        recorded = await handle.fetch_history()
    old_history = WorkflowHistory.from_json(handle.id, recorded.to_json_dict())

    # before the deploy, CI replays the old code's history against the new code
    await replayer(PatchedLoanApproval).replay_workflow(old_history)
    await replayer(UnpatchedLoanApproval).replay_workflow(old_history)  # mid-wait: still equal

    # the new release takes over the queue; the waiting loan completes on it
    async with AsyncExitStack() as new:
        await run_worker(new, temporal_client, settings, sessions, queue, PatchedLoanApproval)
        state = await send(handle, "decide", vote(approver, "loan_officer"))
        assert state.stage == Stage.APPROVED
        events = [e.event for e in await kit.events(waiting.loan_id)]
        assert events[-3:] == ["approval_vote", CONFIRMED, "approved"]
        finished = await handle.fetch_history()

    # the finished history replays on the new code, and not on the unpatched change: had the
    # old worker approved it, the unpatched code would meet a history without the new step
    await replayer(PatchedLoanApproval).replay_workflow(finished)
    approved_by_old = await approved_on(
        temporal_client, settings, sessions, kit, LoanApprovalWorkflow
    )
    await replayer(PatchedLoanApproval).replay_workflow(approved_by_old)
    with pytest.raises(NondeterminismError):
        await replayer(UnpatchedLoanApproval).replay_workflow(approved_by_old)


async def approved_on(
    client: Client, settings: Settings, sessions: Sessions, kit: LoanKit, code: type
) -> WorkflowHistory:
    """The history of a loan approved start to end by `code`."""
    queue = f"tq-deploy-{uuid.uuid4().hex[:8]}"
    officer, approver = await kit.staff("loan_officer"), await kit.staff("loan_officer")
    inp = await kit.register(officer, await kit.product(), await kit.member(), "800.00")
    async with AsyncExitStack() as stack:
        await run_worker(stack, client, settings, sessions, queue, code)
        handle = await start(client, queue, inp)
        await send(handle, "initial_outcome")
        assert (
            await send(handle, "decide", vote(approver, "loan_officer"))
        ).stage == Stage.APPROVED
        return await handle.fetch_history()
