"""KycReview on a real Temporal dev server, the real worker and Postgres. Decisions are the
workflow's own Updates, called directly: the workflow is the authority on who may decide."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from activities.db import in_transaction
from activities.tables import KycCase, LedgerAccount, Member, Notification
from activities.watchlist import replace_watchlist
from schemas.errors import ErrorCode
from schemas.kyc import DecisionInput, KycState, Resubmission, Stage, WatchlistRow
from schemas.settings import Settings
from tests.conftest import Sessions
from tests.kyc.conftest import (
    PDF,
    SUBMITTER_ID,
    complete_documents,
    kyc_input,
    new_member,
    policy,
    start_case,
    upload,
)
from tests.workflows.conftest import record_history
from workflows.kyc_review import KycReviewWorkflow

Handle = Any  # execute_update is typed for sync handlers; results are KycState
REVIEWER_ID, REVIEWER2_ID, COMPLIANCE_ID = 7101, 7102, 7201


def decision(
    action: str = "approve",
    by_id: int = REVIEWER_ID,
    roles: tuple[str, ...] = ("kyc_reviewer",),
    **extra: object,
) -> DecisionInput:
    return DecisionInput.model_validate(
        {
            "action": action,
            "decided_by_id": by_id,
            "decided_by": f"user{by_id}",
            "decided_by_roles": list(roles),
            **extra,
        }
    )


async def refused(handle: Handle, bad: DecisionInput) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await handle.execute_update(KycReviewWorkflow.decide, bad)
    assert isinstance(err.value.cause, ApplicationError)
    return str(err.value.cause.type)


async def wait_for_stage(handle: Handle, stage: Stage) -> KycState:
    """Poll the Query until the case reaches `stage` (a Signal's effect is asynchronous)."""
    while True:
        state: KycState = await handle.query(KycReviewWorkflow.state)
        if state.stage == stage:
            return state
        await asyncio.sleep(0.05)


async def member_row(sessions: Sessions, member_id: int) -> Member:
    async with sessions() as session:
        member = await session.get(Member, member_id)
        assert member is not None
        return member


async def outbox(sessions: Sessions, case_number: str) -> list[tuple[str, str]]:
    async with sessions() as session:
        rows = await session.execute(
            select(Notification.template, Notification.recipient)
            .where(Notification.process_id.startswith(f"kyc-{case_number}-"))
            .order_by(Notification.id)
        )
        return [(t, r) for t, r in rows]


async def test_low_risk_is_approved_automatically(
    temporal_client: Client, worker: str, settings: Settings, sessions: Sessions
) -> None:
    member = await new_member(sessions)
    await complete_documents(sessions, member)
    handle = await start_case(temporal_client, worker, kyc_input(member, policy(settings)))
    state = await handle.result()
    assert state.stage == Stage.APPROVED and state.risk == "low"
    assert {c.name: c.passed for c in state.checks} == {
        "required:national_id|passport|drivers_licence": True,
        "required:proof_of_address": True,
        "required:photo": True,
        "id_format:passport": True,
        "duplicate_identity:passport": True,
        "expiry:passport": True,
        "age": True,
        "watchlist": True,
    }
    row = await member_row(sessions, member.id)
    assert (row.kyc_status, row.kyc_tier) == ("verified", 1)
    async with sessions() as session:
        accounts = list(
            await session.scalars(select(LedgerAccount).where(LedgerAccount.member_id == member.id))
        )
        case = await session.get(KycCase, state.case_number)
    assert [a.code for a in accounts] == [state.account_number] and accounts[0].kind == "savings"
    assert case is not None and case.status == "approved" and case.risk == "low"
    assert await outbox(sessions, state.case_number) == [("kyc_approved", "member@example.org")]
    await record_history(handle, "kyc_auto_approved")


async def test_medium_risk_needs_a_reviewer_who_is_not_the_submitter(
    temporal_client: Client, worker: str, settings: Settings, sessions: Sessions
) -> None:
    member = await new_member(sessions)
    await complete_documents(sessions, member, expiry=date.today() + timedelta(days=40))
    handle = await start_case(temporal_client, worker, kyc_input(member, policy(settings)))
    state = await handle.execute_update(KycReviewWorkflow.initial_outcome)
    assert state.stage == Stage.AWAITING_REVIEW and state.risk == "medium"
    assert state.pending_role == "kyc_reviewer"
    assert "passport expires within 90 days" in state.risk_reasons
    assert (await member_row(sessions, member.id)).kyc_status == "pending"

    assert await refused(handle, decision(by_id=SUBMITTER_ID)) == ErrorCode.FOUR_EYES
    assert await refused(handle, decision(roles=("teller",))) == ErrorCode.FORBIDDEN
    assert await refused(handle, decision(roles=("admin",))) == ErrorCode.FORBIDDEN
    assert await refused(handle, decision(roles=("compliance_officer",))) == ErrorCode.FORBIDDEN

    done = await handle.execute_update(KycReviewWorkflow.decide, decision())
    assert done.stage == Stage.APPROVED and done.decisions[0].by == f"user{REVIEWER_ID}"
    assert (await member_row(sessions, member.id)).kyc_status == "verified"
    await record_history(handle, "kyc_reviewer_approved")


async def test_reviewer_rejects_with_a_reason_code(
    temporal_client: Client, worker: str, settings: Settings, sessions: Sessions
) -> None:
    member = await new_member(sessions)
    await complete_documents(sessions, member)
    inp = kyc_input(member, policy(settings, low_risk_routing="reviewer"))
    handle = await start_case(temporal_client, worker, inp)
    state = await handle.execute_update(KycReviewWorkflow.initial_outcome)
    assert state.stage == Stage.AWAITING_REVIEW and state.risk == "low"
    done = await handle.execute_update(
        KycReviewWorkflow.decide,
        decision("reject", reason_code="forged_document", note="photo does not match"),
    )
    assert done.stage == Stage.REJECTED
    assert done.outcome_reason == "forged_document: photo does not match"
    assert (await member_row(sessions, member.id)).kyc_status == "rejected"
    # Decided already: the workflow has ended, so the server itself refuses the Update.
    with pytest.raises((WorkflowUpdateFailedError, RPCError)):
        await handle.execute_update(KycReviewWorkflow.decide, decision())
    assert await outbox(sessions, inp.case_number) == [("kyc_rejected", "member@example.org")]
    await record_history(handle, "kyc_rejected")


async def test_more_information_loop(
    temporal_client: Client, worker: str, settings: Settings, sessions: Sessions
) -> None:
    member = await new_member(sessions)
    # A Nigerian NIN must have 11 digits; this one has 10, and there is no proof of address.
    await upload(
        sessions, member, doc_type="national_id", number="1234567890", issuing_country="NG"
    )
    await upload(sessions, member, doc_type="photo")
    inp = kyc_input(member, policy(settings))
    handle = await start_case(temporal_client, worker, inp)
    state = await handle.execute_update(KycReviewWorkflow.initial_outcome)
    assert state.stage == Stage.AWAITING_MEMBER
    assert state.requested_documents == [
        "proof_of_address",
        "a valid national_id (Nigeria NIN: 11 digits)",
    ]
    assert await refused(handle, decision()) == ErrorCode.NOT_AWAITING_DECISION

    await upload(
        sessions, member, doc_type="national_id", number="12345678901", issuing_country="NG"
    )
    await upload(sessions, member, PDF, doc_type="proof_of_address")
    await handle.signal(KycReviewWorkflow.resubmit, Resubmission(by="teller1"))
    # Round 2 passes every check, and low risk is approved automatically.
    final = await handle.result()
    assert final.stage == Stage.APPROVED and final.round == 2
    assert [t for t, _ in await outbox(sessions, inp.case_number)] == [
        "kyc_more_information",
        "kyc_approved",
    ]
    await record_history(handle, "kyc_more_information")


async def test_reviewer_asks_for_documents_and_the_member_resubmits(
    temporal_client: Client, worker: str, settings: Settings, sessions: Sessions
) -> None:
    member = await new_member(sessions)
    await complete_documents(sessions, member)
    inp = kyc_input(member, policy(settings, low_risk_routing="reviewer"))
    handle = await start_case(temporal_client, worker, inp)
    await handle.execute_update(KycReviewWorkflow.initial_outcome)
    asked = await handle.execute_update(
        KycReviewWorkflow.decide,
        decision("request_information", documents=["proof_of_address"], note="blurred"),
    )
    assert asked.stage == Stage.AWAITING_MEMBER
    assert asked.requested_documents == ["proof_of_address"]
    await upload(sessions, member, PDF, doc_type="proof_of_address")
    await handle.signal(KycReviewWorkflow.resubmit, Resubmission(by="teller1"))
    # Round 2 needs a reviewer again; another one may decide it.
    state = await wait_for_stage(handle, Stage.AWAITING_REVIEW)
    assert state.round == 2
    done = await handle.execute_update(KycReviewWorkflow.decide, decision(by_id=REVIEWER2_ID))
    assert done.stage == Stage.APPROVED
    assert [d.action for d in done.decisions] == ["request_information", "approve"]
    await record_history(handle, "kyc_reviewer_requested_information")


async def test_watchlist_hit_needs_a_reviewer_and_a_different_compliance_officer(
    temporal_client: Client, worker: str, settings: Settings, sessions: Sessions
) -> None:
    last = f"Zed{uuid.uuid4().hex[:6]}"
    member = await new_member(sessions, first="Ibrahim", last=last, born=date(1971, 4, 2))
    await in_transaction(
        sessions,
        lambda s: replace_watchlist(
            s,
            [
                WatchlistRow(
                    full_name=f"{last.upper()}, Ibrahím",
                    date_of_birth=date(1971, 4, 2),
                    source="UN",
                    reference="QDi.001",
                )
            ],
        ),
    )
    await complete_documents(sessions, member)
    handle = await start_case(temporal_client, worker, kyc_input(member, policy(settings)))
    state = await handle.execute_update(KycReviewWorkflow.initial_outcome)
    assert state.stage == Stage.AWAITING_REVIEW and state.risk == "high"
    (screening,) = [c for c in state.checks if c.name == "watchlist"]
    assert not screening.passed and "UN:QDi.001" in screening.reason

    both = ("kyc_reviewer", "compliance_officer")
    reviewed = await handle.execute_update(
        KycReviewWorkflow.decide, decision(by_id=REVIEWER_ID, roles=both)
    )
    assert reviewed.stage == Stage.AWAITING_COMPLIANCE
    assert reviewed.pending_role == "compliance_officer"
    assert await refused(handle, decision(by_id=REVIEWER_ID, roles=both)) == ErrorCode.FOUR_EYES
    assert await refused(handle, decision(by_id=SUBMITTER_ID, roles=both)) == ErrorCode.FOUR_EYES
    assert await refused(handle, decision(by_id=REVIEWER2_ID)) == ErrorCode.FORBIDDEN
    done = await handle.execute_update(
        KycReviewWorkflow.decide, decision(by_id=COMPLIANCE_ID, roles=("compliance_officer",))
    )
    assert done.stage == Stage.APPROVED
    assert [d.stage for d in done.decisions] == [Stage.AWAITING_REVIEW, Stage.AWAITING_COMPLIANCE]
    await in_transaction(sessions, lambda s: replace_watchlist(s, []))
    await record_history(handle, "kyc_watchlist_compliance")


async def test_duplicate_identity_is_high_risk(
    temporal_client: Client, worker: str, settings: Settings, sessions: Sessions
) -> None:
    first = await new_member(sessions)
    second = await new_member(sessions)
    number = f"A{uuid.uuid4().int % 10**7:07d}"
    await complete_documents(sessions, first, passport=number)
    await complete_documents(sessions, second, passport=number)
    handle = await start_case(temporal_client, worker, kyc_input(second, policy(settings)))
    state = await handle.execute_update(KycReviewWorkflow.initial_outcome)
    assert state.stage == Stage.AWAITING_REVIEW and state.risk == "high"
    (dup,) = [c for c in state.checks if c.name == "duplicate_identity:passport"]
    assert not dup.passed and first.member_number in dup.reason
    assert number not in dup.reason  # no ID numbers in workflow state
    await handle.execute_update(
        KycReviewWorkflow.decide, decision("reject", reason_code="duplicate_identity")
    )
    assert (await handle.result()).stage == Stage.REJECTED


async def test_underage_member_is_rejected(
    temporal_client: Client, worker: str, settings: Settings, sessions: Sessions
) -> None:
    today = date.today()
    member = await new_member(sessions, born=date(today.year - 17, 1, 1))
    await complete_documents(sessions, member)
    state = await (
        await start_case(temporal_client, worker, kyc_input(member, policy(settings)))
    ).result()
    assert state.stage == Stage.REJECTED and state.outcome_reason is not None
    assert state.outcome_reason.startswith("underage")
    assert (await member_row(sessions, member.id)).kyc_status == "rejected"
