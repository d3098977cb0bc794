"""LoanApproval's long timers on the time-skipping test server: a week without guarantor
consent, and the 24-hour reminder and 72-hour escalation of an approval level."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from temporalio.testing import WorkflowEnvironment

from activities.tables import Notification, StaffUser
from schemas.loans import Stage
from tests.loans.conftest import LoanKit, query_state, send, start, vote
from tests.workflows.conftest import record_history


async def test_no_guarantor_consent_within_seven_days_ends_it(
    skipping_env: WorkflowEnvironment, skipping_worker: str, kit: LoanKit
) -> None:
    product = await kit.product()
    officer = await kit.staff("loan_officer")
    inp = await kit.register(
        officer,
        product,
        await kit.member(),
        "700.00",
        guarantors=[(await kit.member(), "100.00")],
    )
    assert inp.guarantor_timeout == timedelta(days=7)
    handle = await start(skipping_env.client, skipping_worker, inp)
    result = await handle.result()
    assert result.stage == Stage.REJECTED
    assert result.reason.startswith("no consent within 7 days")
    loan = await kit.loan(inp.loan_id)
    assert loan.state == "rejected"
    await record_history(handle, "loan_approval_guarantor_timeout")


async def test_reminder_after_a_day_then_escalation_lets_the_next_role_decide(
    skipping_env: WorkflowEnvironment, skipping_worker: str, kit: LoanKit
) -> None:
    product = await kit.product()
    officer, manager = await kit.staff("loan_officer"), await kit.staff("branch_manager")
    async with kit.sessions() as s, s.begin():
        for who in (officer, manager):
            await s.execute(
                update(StaffUser)
                .where(StaffUser.id == who.id)
                .values(email=f"{who.username}@staff.example.org")
            )
    inp = await kit.register(officer, product, await kit.member(), "600.00")
    handle = await start(skipping_env.client, skipping_worker, inp)
    state = await send(handle, "initial_outcome")
    assert state.assigned_role == "loan_officer"
    await skipping_env.sleep(timedelta(hours=25))
    state = await query_state(handle)
    assert state.level is not None and state.level.reminded and not state.level.escalated
    await skipping_env.sleep(timedelta(hours=48))
    state = await query_state(handle)
    assert state.level is not None and state.level.escalated
    assert state.assigned_role == "branch_manager"
    assert state.level.allowed_roles == ["loan_officer", "branch_manager"]
    assert "waiting for a loan officer or branch manager to decide" in state.details
    done = await send(handle, "decide", vote(manager, "branch_manager"))
    assert done.stage == Stage.APPROVED
    events = [e.event for e in await kit.events(inp.loan_id)]
    assert events[2:6] == ["awaiting_approval", "reminder_sent", "escalated", "approval_vote"]
    async with kit.sessions() as s:
        rows = await s.execute(
            select(Notification.template, Notification.recipient).where(
                Notification.process_id.like(f"{handle.id}%")
            )
        )
        sent = {(template, recipient) for template, recipient in rows}
    assert ("loan_approval_reminder", f"{officer.username}@staff.example.org") in sent
    assert ("loan_approval_escalated", f"{manager.username}@staff.example.org") in sent
    assert ("loan_approval_reminder", f"{manager.username}@staff.example.org") not in sent
    assert "loan_approved" in {template for template, _ in sent}
    await record_history(handle, "loan_approval_escalated")
