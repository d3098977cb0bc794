"""SLA timers on the time-skipping test server: a reminder to the reviewer role after 24 hours,
an escalation to the supervisor role after 48, and expiry after 30 days waiting for the member."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from activities.db import in_transaction
from activities.staff import create_staff_user
from activities.tables import Member, Notification
from schemas.kyc import DecisionInput, KycState, Stage
from schemas.settings import Settings
from tests.conftest import Sessions
from tests.kyc.conftest import complete_documents, kyc_input, new_member, policy, start_case, upload
from tests.workflows.conftest import record_history
from workflows.kyc_review import KycReviewWorkflow


async def staff_with_email(sessions: Sessions, role: str) -> str:
    email = f"{role}-{uuid.uuid4().hex[:6]}@bank.example.org"
    await in_transaction(
        sessions,
        lambda s: create_staff_user(
            s, username=email, full_name=role, password="long enough", roles=[role], email=email
        ),
    )
    return email


async def sent_to(sessions: Sessions, case_number: str, template: str) -> set[str]:
    async with sessions() as session:
        rows = await session.scalars(
            select(Notification.recipient).where(
                Notification.process_id.startswith(f"kyc-{case_number}-"),
                Notification.template == template,
            )
        )
        return set(rows)


async def until_sent(sessions: Sessions, case_number: str, template: str) -> set[str]:
    """Time stands still while activities run; wait for the sends the timer started."""
    while not (found := await sent_to(sessions, case_number, template)):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    return found


async def test_reminder_after_24h_then_escalation_after_48h(
    skipping_env: WorkflowEnvironment, skipping_worker: str, settings: Settings, sessions: Sessions
) -> None:
    reviewer = await staff_with_email(sessions, "kyc_reviewer")
    supervisor = await staff_with_email(sessions, "branch_manager")
    member = await new_member(sessions)
    # The workflow judges expiry on its own clock, which earlier time-skipping tests of the
    # session have moved on (by months after the reversal timeout tests).
    today = (await skipping_env.get_current_time()).date()
    await complete_documents(sessions, member, expiry=today + timedelta(days=60))
    inp = kyc_input(member, policy(settings))
    handle = await start_case(skipping_env.client, skipping_worker, inp)
    state: KycState = await handle.execute_update(KycReviewWorkflow.initial_outcome)
    assert state.stage == Stage.AWAITING_REVIEW

    await skipping_env.sleep(timedelta(hours=23))
    assert not await sent_to(sessions, inp.case_number, "kyc_reminder")
    await skipping_env.sleep(timedelta(hours=2))
    assert reviewer in await until_sent(sessions, inp.case_number, "kyc_reminder")
    assert not await sent_to(sessions, inp.case_number, "kyc_escalation")
    await skipping_env.sleep(timedelta(hours=24))
    escalated = await until_sent(sessions, inp.case_number, "kyc_escalation")
    assert supervisor in escalated and reviewer not in escalated

    done: KycState = await handle.execute_update(
        KycReviewWorkflow.decide,
        DecisionInput(
            action="approve", decided_by_id=1, decided_by="kyc1", decided_by_roles=["kyc_reviewer"]
        ),
    )
    assert done.stage == Stage.APPROVED
    notes = [h.note for h in done.history]
    assert any(n.startswith("reminder sent to") for n in notes)
    assert any(n.startswith("escalation sent to") for n in notes)
    await record_history(handle, "kyc_reminded_and_escalated")


async def test_case_expires_after_30_days_without_the_member(
    skipping_env: WorkflowEnvironment, skipping_worker: str, settings: Settings, sessions: Sessions
) -> None:
    member = await new_member(sessions)
    await upload(sessions, member, doc_type="photo")  # no identity document, no address
    inp = kyc_input(member, policy(settings))
    handle = await start_case(skipping_env.client, skipping_worker, inp)
    result: KycState = await handle.result()  # the server skips the 30 days
    assert result.stage == Stage.EXPIRED
    assert result.history[-1].at - result.history[0].at >= timedelta(days=30)
    assert await sent_to(sessions, inp.case_number, "kyc_expired") == {"member@example.org"}
    async with sessions() as session:
        row = await session.get(Member, member.id)
        assert row is not None and row.kyc_status == "unverified"
    await record_history(handle, "kyc_expired")
