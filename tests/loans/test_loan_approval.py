"""LoanApproval on a real Temporal dev server and Postgres, decisions sent as Updates directly
(bypassing the API) so the workflow's own refusals are what is tested."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from activities.db import in_transaction
from activities.ledger import engine as ledger_engine
from activities.ledger.chart import CASH
from activities.tables import LedgerAccount, Notification
from schemas.errors import ErrorCode
from schemas.ledger import JournalRequest, PostingLine
from schemas.loans import Actor, Amendment, Decision, Stage, Withdrawal
from tests.conftest import CURRENCY
from tests.loans.conftest import Handle, LoanKit, consent, query_state, send, start, vote
from tests.workflows.conftest import record_history


async def refused(handle: Handle, update: str, arg: object) -> str:
    """Send an Update the workflow must refuse; returns the refusal's error code."""
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await handle.execute_update(update, arg)
    cause = err.value.cause
    assert isinstance(cause, ApplicationError) and cause.type
    return cause.type


async def ready(handle: Handle) -> Stage:
    state = await send(handle, "initial_outcome")
    return state.stage


def withdrawal(who: Actor, reason: str = "member changed their mind") -> Withdrawal:
    return Withdrawal(reason=reason, actor=who)


async def test_small_loan_needs_one_loan_officer_then_can_be_withdrawn(
    temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    product = await kit.product()
    officer, other = await kit.staff("loan_officer"), await kit.staff("loan_officer")
    inp = await kit.register(officer, product, await kit.member(), "800.00")
    handle = await start(temporal_client, worker, inp)
    assert await ready(handle) == Stage.AWAITING_APPROVAL
    state = await send(handle, "decide", vote(other, "loan_officer"))
    assert state.stage == Stage.APPROVED and state.state == "approved"
    loan = await kit.loan(inp.loan_id)
    assert loan.state == "approved" and loan.stage == "approved"
    events = [e.event for e in await kit.events(inp.loan_id)]
    assert events == [
        "submitted",
        "eligibility_checked",
        "awaiting_approval",
        "approval_vote",
        "approved",
    ]
    async with kit.sessions() as s:
        sent = await s.scalar(select(Notification).where(Notification.process_id == handle.id))
    assert sent is not None and sent.template == "loan_approved" and "800.00" in sent.body_text
    # approved, not yet disbursed: the applicant may still withdraw
    who = Actor(user_id=officer.id, username=officer.username, roles=["loan_officer"])
    done = await send(handle, "withdraw", withdrawal(who))
    assert done.stage == Stage.WITHDRAWN
    assert (await handle.result()).state == "withdrawn"
    trail = await kit.events(inp.loan_id)
    assert (trail[-1].event, trail[-1].from_state, trail[-1].to_state, trail[-1].actor) == (
        "withdrawn",
        "approved",
        "withdrawn",
        officer.username,
    )
    await record_history(handle, "loan_approval_single_level_withdrawn")


async def test_middle_tier_goes_through_two_levels_in_order(
    temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    product = await kit.product()
    officer, officer2 = await kit.staff("loan_officer"), await kit.staff("loan_officer")
    manager = await kit.staff("branch_manager")
    inp = await kit.register(officer, product, await kit.member(5_000_00), "5000.00")
    handle = await start(temporal_client, worker, inp)
    await ready(handle)
    # level 1 is a loan officer's: the manager may not jump the queue
    code = await refused(handle, "decide", vote(manager, "branch_manager"))
    assert code == ErrorCode.FORBIDDEN
    state = await send(handle, "decide", vote(officer2, "loan_officer"))
    assert state.stage == Stage.AWAITING_APPROVAL and state.level is not None
    assert (state.level.level, state.assigned_role) == (2, "branch_manager")
    assert "waiting for a branch manager to decide (level 2 of 2)" in state.details
    # and now the officer's role no longer decides
    officer3 = await kit.staff("loan_officer")
    assert await refused(handle, "decide", vote(officer3, "loan_officer")) == ErrorCode.FORBIDDEN
    done = await send(handle, "decide", vote(manager, "branch_manager"))
    assert done.stage == Stage.APPROVED
    assert [v.role for v in done.votes] == ["loan_officer", "branch_manager"]
    await record_history(handle, "loan_approval_two_levels")


async def test_committee_quorum_refuses_a_duplicate_vote(
    temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    product = await kit.product()
    officer, manager = await kit.staff("loan_officer"), await kit.staff("branch_manager")
    c1, c2 = await kit.staff("credit_committee"), await kit.staff("credit_committee")
    inp = await kit.register(officer, product, await kit.member(10_000_00), "20000.00")
    handle = await start(temporal_client, worker, inp)
    await ready(handle)
    await send(handle, "decide", vote(manager, "branch_manager"))
    state = await send(handle, "decide", vote(c1, "credit_committee"))
    assert state.stage == Stage.AWAITING_APPROVAL and state.level is not None
    assert state.level.approvals == 1
    assert "waiting for 1 of 2 credit committee votes" in state.details
    assert await refused(handle, "decide", vote(c1, "credit_committee")) == ErrorCode.ALREADY_VOTED
    # the manager who approved level 1 cannot also be a committee vote, whatever roles they hold
    assert (
        await refused(handle, "decide", vote(manager, "credit_committee"))
        == ErrorCode.ALREADY_VOTED
    )
    loan = await kit.loan(inp.loan_id)
    assert loan.current_details.endswith("waiting for 1 of 2 credit committee votes (level 2 of 2)")
    done = await send(handle, "decide", vote(c2, "credit_committee"))
    assert done.stage == Stage.APPROVED
    assert [v.approver for v in done.votes] == [manager.username, c1.username, c2.username]
    await record_history(handle, "loan_approval_committee")


async def test_every_forbidden_decision_is_refused_inside_the_workflow(
    temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    product = await kit.product(guarantee={"min_guaranteed_by_others_pct": "0"})
    officer = await kit.staff("loan_officer")
    guarantor = await kit.member(2_000_00)
    inp = await kit.register(
        officer, product, await kit.member(), "900.00", guarantors=[(guarantor, "100.00")]
    )
    handle = await start(temporal_client, worker, inp)
    assert await ready(handle) == Stage.AWAITING_GUARANTORS
    who = await kit.staff("teller")
    await send(handle, "guarantor_consent", consent(who, guarantor))
    other = await kit.staff("loan_officer")
    # not awaiting approval yet, or already: either way nobody decides out of turn
    state = await query_state(handle)
    while state.stage != Stage.AWAITING_APPROVAL:
        state = await query_state(handle)
    g_id = inp.guarantors[0].member_id
    cases: list[tuple[Decision, ErrorCode]] = [
        (vote(officer, "loan_officer"), ErrorCode.FOUR_EYES),  # entered the application
        (vote(other, "loan_officer", member_ids=[inp.member_id]), ErrorCode.FOUR_EYES),
        (vote(other, "loan_officer", member_ids=[g_id]), ErrorCode.FOUR_EYES),
        (vote(other, "teller"), ErrorCode.FORBIDDEN),
        (vote(other, "admin"), ErrorCode.FORBIDDEN),
        (vote(other, "credit_committee"), ErrorCode.FORBIDDEN),
        (vote(other, "loan_officer", principal_minor=950_00), ErrorCode.VALIDATION),  # higher
        (vote(other, "loan_officer", principal_minor=50_00), ErrorCode.VALIDATION),  # < min
        (vote(other, "loan_officer", repayments=99), ErrorCode.VALIDATION),
    ]
    for decision, code in cases:
        assert await refused(handle, "decide", decision) == code, decision
    assert (await query_state(handle)).votes == []
    done = await send(
        handle, "decide", vote(other, "loan_officer", "reject", reason="income unclear")
    )
    assert done.stage == Stage.REJECTED
    late = await kit.staff("loan_officer")
    with pytest.raises((WorkflowUpdateFailedError, RPCError)):
        await send(handle, "decide", vote(late, "loan_officer"))
    loan = await kit.loan(inp.loan_id)
    assert loan.state == "rejected"
    trail = await kit.events(inp.loan_id)
    assert (trail[-1].actor, trail[-1].reason, trail[-1].to_state) == (
        other.username,
        "income unclear",
        "rejected",
    )
    async with kit.sessions() as s:
        templates = set(
            await s.scalars(
                select(Notification.template).where(Notification.process_id == handle.id)
            )
        )
    assert templates == {"loan_rejected"}
    await record_history(handle, "loan_approval_guarantor_then_rejected")


async def test_approve_with_a_lower_amount_and_another_term(
    temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    product = await kit.product()
    officer, other = await kit.staff("loan_officer"), await kit.staff("loan_officer")
    manager = await kit.staff("branch_manager")
    inp = await kit.register(officer, product, await kit.member(5_000_00), "6000.00", repayments=12)
    handle = await start(temporal_client, worker, inp)
    await ready(handle)
    state = await send(
        handle,
        "decide",
        vote(other, "loan_officer", reason="cap at 4,500", principal_minor=4_500_00, repayments=18),
    )
    assert (state.principal_minor, state.repayments) == (4_500_00, 18)
    done = await send(handle, "decide", vote(manager, "branch_manager"))
    assert done.stage == Stage.APPROVED and done.principal_minor == 4_500_00
    loan = await kit.loan(inp.loan_id)
    assert (loan.principal_minor, loan.repayments, loan.requested_principal_minor) == (
        4_500_00,
        18,
        6_000_00,
    )
    first_vote = next(e for e in await kit.events(inp.loan_id) if e.event == "approval_vote")
    assert first_vote.data["principal"] == "4500.00 USD" and first_vote.data["repayments"] == 18
    assert first_vote.data["total_due"].endswith(" USD")  # the schedule was recomputed
    await record_history(handle, "loan_approval_lower_amount")


async def test_a_changed_amount_is_refused_when_savings_no_longer_cover_it(
    temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    product = await kit.product()  # the applicant must hold 10% of the principal
    officer, other = await kit.staff("loan_officer"), await kit.staff("loan_officer")
    inp = await kit.register(officer, product, await kit.member(500_00), "900.00")
    handle = await start(temporal_client, worker, inp)
    await ready(handle)
    async with kit.sessions() as s:
        acc = await s.scalar(
            select(LedgerAccount.id).where(LedgerAccount.member_id == inp.member_id)
        )
    assert acc is not None
    withdrawal_journal = JournalRequest(
        journal_id=f"test-out-{inp.loan_number}",
        kind="withdrawal",
        value_date=date.today(),
        postings=[
            PostingLine(
                debit_account_id=acc,
                credit_account_id=kit.factory.gl(CASH.number),
                amount_minor=450_00,
                currency=CURRENCY,
            )
        ],
    )
    await in_transaction(kit.sessions, lambda s: ledger_engine.post_journal(s, withdrawal_journal))
    code = await refused(handle, "decide", vote(other, "loan_officer", principal_minor=800_00))
    assert code == ErrorCode.GUARANTEE_NOT_MET
    state = await query_state(handle)
    assert state.votes == [] and state.principal_minor == 900_00
    # the refused approver has not used up their vote
    done = await send(
        handle, "decide", vote(other, "loan_officer", "reject", reason="savings gone")
    )
    assert done.stage == Stage.REJECTED


async def test_return_for_changes_then_amend_restarts_routing(
    temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    product = await kit.product()
    officer, other = await kit.staff("loan_officer"), await kit.staff("loan_officer")
    inp = await kit.register(officer, product, await kit.member(), "900.00")
    handle = await start(temporal_client, worker, inp)
    await ready(handle)
    bare = await refused(handle, "decide", vote(other, "loan_officer", "return"))
    assert bare == ErrorCode.VALIDATION  # a return needs its reason
    state = await send(
        handle,
        "decide",
        vote(other, "loan_officer", "return", reason="add a payslip; 10 repayments"),
    )
    assert (
        state.stage == Stage.RETURNED_FOR_CHANGES
        and state.state == "submitted_and_pending_approval"
    )
    assert (
        await refused(handle, "decide", vote(other, "loan_officer"))
        == ErrorCode.NOT_AWAITING_DECISION
    )
    applicant = Actor(user_id=officer.id, username=officer.username, roles=["loan_officer"])
    approver_only = Actor(user_id=other.id, username=other.username, roles=["credit_committee"])
    assert (
        await refused(handle, "amend", Amendment(repayments=10, actor=approver_only))
        == ErrorCode.FORBIDDEN
    )
    assert (
        await refused(handle, "amend", Amendment(principal_minor=90_000_00, actor=applicant))
        == ErrorCode.VALIDATION
    )
    amended = await send(
        handle,
        "amend",
        Amendment(
            repayments=10, purpose="stock for the shop", reason="payslip added", actor=applicant
        ),
    )
    assert amended.stage == Stage.AWAITING_APPROVAL and amended.round == 2
    assert amended.repayments == 10
    # a new round: the officer who returned it may decide again
    done = await send(handle, "decide", vote(other, "loan_officer"))
    assert done.stage == Stage.APPROVED and done.repayments == 10
    events = [e.event for e in await kit.events(inp.loan_id)]
    assert events[-5:] == [
        "returned_for_changes",
        "amended",
        "awaiting_approval",
        "approval_vote",
        "approved",
    ]
    await send(handle, "withdraw", withdrawal(applicant))
    await record_history(handle, "loan_approval_returned_amended")


async def test_withdrawal_while_waiting_for_approval(
    temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    product = await kit.product()
    officer = await kit.staff("loan_officer")
    inp = await kit.register(officer, product, await kit.member(), "500.00")
    handle = await start(temporal_client, worker, inp)
    await ready(handle)
    approver = Actor(user_id=officer.id, username=officer.username, roles=["credit_committee"])
    assert await refused(handle, "withdraw", withdrawal(approver)) == ErrorCode.FORBIDDEN
    teller = await kit.staff("teller")
    who = Actor(user_id=teller.id, username=teller.username, roles=["teller"])
    assert await refused(handle, "withdraw", withdrawal(who, "")) == ErrorCode.VALIDATION
    done = await send(handle, "withdraw", withdrawal(who))
    assert done.stage == Stage.WITHDRAWN and done.state == "withdrawn"
    assert (await handle.result()).stage == Stage.WITHDRAWN
    loan = await kit.loan(inp.loan_id)
    assert (loan.state, loan.assigned_role) == ("withdrawn", None)
    await record_history(handle, "loan_approval_withdrawn")


async def test_ineligible_application_ends_rejected_with_its_reasons(
    temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    product = await kit.product()
    officer = await kit.staff("loan_officer")
    member = await kit.member(100_00, verified=False)  # 20 x 100.00 = 2,000.00 at most
    inp = await kit.register(officer, product, member, "5000.00")
    handle = await start(temporal_client, worker, inp)
    result = await handle.result()
    assert result.stage == Stage.REJECTED and result.state == "rejected"
    failed = {c.rule for c in result.eligibility if not c.passed}
    assert failed == {"kyc_verified", "kyc_tier_limit", "savings_multiple", "own_savings"}
    loan = await kit.loan(inp.loan_id)
    assert loan.state == "rejected" and "KYC is unverified" in loan.current_details
    assert {c["rule"] for c in loan.eligibility if not c["passed"]} == failed
    await record_history(handle, "loan_approval_ineligible")


async def test_guarantor_decline_ends_the_application(
    temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    product = await kit.product(guarantee={"min_guaranteed_by_others_pct": "50"})
    officer, teller = await kit.staff("loan_officer"), await kit.staff("teller")
    g1, g2 = await kit.member(1_000_00), await kit.member(1_000_00)
    inp = await kit.register(
        officer, product, await kit.member(), "800.00", guarantors=[(g1, "200.00"), (g2, "200.00")]
    )
    handle = await start(temporal_client, worker, inp)
    assert await ready(handle) == Stage.AWAITING_GUARANTORS
    for number, accept in ((g1, True), (g2, False)):
        note = "" if accept else "cannot commit"
        await send(handle, "guarantor_consent", consent(teller, number, accept, note=note))
    result = await handle.result()
    assert result.stage == Stage.REJECTED and result.guarantors == {g1: "accepted", g2: "declined"}
    assert f"guarantor {g2} declined: cannot commit" in result.reason
    await record_history(handle, "loan_approval_guarantor_declined")


async def test_a_guarantor_without_free_savings_cannot_accept(
    temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    product = await kit.product()
    officer, teller = await kit.staff("loan_officer"), await kit.staff("teller")
    poor = await kit.member(50_00)
    inp = await kit.register(
        officer, product, await kit.member(), "800.00", guarantors=[(poor, "300.00")]
    )
    handle = await start(temporal_client, worker, inp)
    await ready(handle)
    await send(handle, "guarantor_consent", consent(teller, poor))
    result = await handle.result()
    assert result.stage == Stage.REJECTED
    assert "free savings 50.00 USD do not cover the guarantee of 300.00 USD" in result.reason


async def test_the_maker_and_the_applicant_cannot_record_a_guarantors_consent(
    temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    """Issue 11.5: recording a guarantor's consent is a decision like the others. The workflow's
    validator refuses the staff user who entered the application and the applicant, before
    anything is written; then a colleague records it."""
    product = await kit.product(guarantee={"min_guaranteed_by_others_pct": "10"})
    officer = await kit.staff("loan_officer")
    guarantor, stranger = await kit.member(2_000_00), await kit.member()
    inp = await kit.register(
        officer, product, await kit.member(), "900.00", guarantors=[(guarantor, "100.00")]
    )
    handle = await start(temporal_client, worker, inp)
    assert await ready(handle) == Stage.AWAITING_GUARANTORS
    teller, finance = await kit.staff("teller"), await kit.staff("finance")
    cases = [
        (consent(officer, guarantor, role="loan_officer"), ErrorCode.FOUR_EYES),  # the maker
        (consent(teller, guarantor, member_ids=[inp.member_id]), ErrorCode.FOUR_EYES),
        (consent(finance, guarantor, role="finance"), ErrorCode.FORBIDDEN),
        (consent(teller, stranger), ErrorCode.NOT_FOUND),
    ]
    for answer, code in cases:
        assert await refused(handle, "guarantor_consent", answer) == code, answer
    state = await query_state(handle)
    assert (state.stage, state.guarantors) == (Stage.AWAITING_GUARANTORS, {guarantor: "pending"})
    assert [e.event for e in await kit.events(inp.loan_id)][-1] == "awaiting_guarantors"

    done = await send(handle, "guarantor_consent", consent(teller, guarantor, note="signed"))
    assert done.stage == Stage.AWAITING_APPROVAL and done.guarantors == {guarantor: "accepted"}
    again = consent(teller, guarantor, accept=False)
    assert await refused(handle, "guarantor_consent", again) == ErrorCode.NOT_AWAITING_DECISION
    last = (await kit.events(inp.loan_id))[-2]
    assert (last.event, last.actor) == ("guarantor_accepted", teller.username)
    teller_actor = Actor(user_id=teller.id, username=teller.username, roles=["teller"])
    await send(handle, "withdraw", withdrawal(teller_actor))
    assert (await handle.result()).stage == Stage.WITHDRAWN
    await record_history(handle, "loan_approval_consent_refused")
