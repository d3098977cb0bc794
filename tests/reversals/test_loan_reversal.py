"""Reversing loan journals through the Reversal workflow: a repayment in the middle of a loan's
life (later repayments re-applied, Fineract's "adjust"), the repayment that closed a loan, and a
disbursement ("undo disbursal", only while nothing was repaid)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, WorkflowHandle

from activities.db import in_transaction
from activities.ledger import engine as ledger_engine
from activities.ledger.chart import INTEREST_INCOME
from activities.reads.loan_statement import payoff_quote
from activities.repayments import post_repayment
from activities.reversal_checks import check_reversible
from activities.tables import Disbursement, Hold, Loan, LoanInstallment, LoanTransaction
from schemas.errors import ErrorCode
from schemas.repayments import RepaymentRequest
from schemas.reversals import ReversalState, Stage
from schemas.settings import Settings
from tests.conftest import Factory, Sessions
from tests.loans.conftest import LoanKit
from tests.loans.repayment_kit import (
    ActiveLoan,
    active_loan,
    balance,
    hold_status,
    ledger_ok,
    repayments_of,
    trail,
)
from tests.reversals.conftest import decide, decision, initial, reversal_input, start
from tests.workflows.conftest import record_history
from workflows.reversal import ReversalWorkflow

DISBURSED = date(2026, 1, 10)
Handle = WorkflowHandle[ReversalWorkflow, ReversalState]


@pytest.fixture
def kit(sessions: Sessions, factory: Factory, settings: Settings) -> LoanKit:
    return LoanKit(sessions, factory, settings)


async def repay(kit: LoanKit, loan: ActiveLoan, amount_minor: int, on: date) -> str:
    """A repayment from savings, posted by the repayment activity itself; its journal id."""
    req = RepaymentRequest(
        workflow_id=f"repayment-{loan.loan_number}-{uuid.uuid4().hex[:8]}",
        loan_number=loan.loan_number,
        amount_minor=amount_minor,
        source="savings",
        value_date=on,
        at=datetime(on.year, on.month, on.day, 12, tzinfo=UTC),
        actor="teller1",
    )
    result = await in_transaction(kit.sessions, lambda s: post_repayment(s, req))
    return result.journal_id


async def reverse(client: Client, queue: str, journal_id: str) -> Handle:
    handle = await start(client, queue, reversal_input(journal_id))
    assert (await initial(handle)).stage == Stage.AWAITING_APPROVAL
    done = await decide(handle, decision())
    assert done.reversal_journal_id is not None, done  # one approval is enough: never waits
    assert (await handle.result()).stage == Stage.COMPLETED
    return handle


async def book(kit: LoanKit, loan_id: int) -> tuple[list[tuple[int, int, int, int, bool]], str]:
    """Every installment's paid parts and completion, and the loan's state."""
    async with kit.sessions() as s:
        rows = await s.scalars(
            select(LoanInstallment)
            .where(LoanInstallment.loan_id == loan_id)
            .order_by(LoanInstallment.number)
        )
        paid = [
            (
                r.principal_paid_minor,
                r.interest_paid_minor,
                r.penalty_paid_minor,
                r.interest_waived_minor,
                r.completed_on is not None,
            )
            for r in rows
        ]
        loan = await s.get(Loan, loan_id)
        assert loan is not None
        return paid, loan.state


async def test_a_repayment_reversed_mid_life_leaves_the_loan_as_if_it_never_happened(
    temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    officer = await kit.staff("loan_officer")
    a = await active_loan(kit, officer, disbursed_on=DISBURSED)
    b = await active_loan(kit, officer, disbursed_on=DISBURSED)
    plan = [(150_00, date(2026, 2, 10)), (60_00, date(2026, 3, 1)), (250_00, date(2026, 3, 10))]
    journals = [await repay(kit, a, amount, on) for amount, on in plan]
    for amount, on in (plan[0], plan[2]):  # the twin never had the middle repayment
        await repay(kit, b, amount, on)
    assert await book(kit, a.loan_id) != await book(kit, b.loan_id)

    await record_history(
        await reverse(temporal_client, worker, journals[1]), "reversal_loan_repayment"
    )

    assert await book(kit, a.loan_id) == await book(kit, b.loan_id)
    assert await balance(kit, a.loan_account_id) == await balance(kit, b.loan_account_id)
    assert await balance(kit, a.savings_id) == await balance(kit, b.savings_id)
    rows_a, rows_b = await repayments_of(kit, a.loan_id), await repayments_of(kit, b.loan_id)
    assert rows_a[1].reversed_by_journal_id == f"reversal-{journals[1]}:reverse"
    last_a, last_b = rows_a[2], rows_b[1]
    assert (last_a.principal_minor, last_a.interest_minor) == (
        last_b.principal_minor,
        last_b.interest_minor,
    )
    # The later repayment was re-posted with its new split; its first journal is reversed.
    assert last_a.journal_id == f"reversal-{journals[1]}:replay-{last_a.id}"
    async with kit.sessions() as s:
        first = await ledger_engine.load_journal(s, journals[2])
    assert first.reversed_by_journal_id == f"reversal-{journals[1]}:undo-{last_a.id}"
    assert ("repayment_reversed", None) in await trail(kit, a.loan_id)
    await ledger_ok(kit)


async def test_reversing_the_closing_repayment_reopens_the_loan_and_its_lien(
    temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    officer = await kit.staff("loan_officer")
    loan = await active_loan(
        kit, officer, principal="300.00", repayments=3, disbursed_on=DISBURSED, lien_minor=100_00
    )
    await repay(kit, loan, 50_00, date(2026, 2, 1))
    closing = await repay(kit, loan, 400_00, date(2026, 2, 20))  # beyond the payoff: closes
    assert (await book(kit, loan.loan_id))[1] == "closed_obligations_met"  # the rest not taken
    assert loan.lien_id is not None and await hold_status(kit, loan.lien_id) == "voided"

    await reverse(temporal_client, worker, closing)

    paid, state = await book(kit, loan.loan_id)
    assert state == "active"
    assert sum(p[0] for p in paid) < 300_00 and not all(p[4] for p in paid)
    async with kit.sessions() as s:
        restored = await s.scalars(
            select(LoanTransaction.id).where(LoanTransaction.loan_id == loan.loan_id)
        )
        assert len(restored.all()) == 3  # disbursement and both repayments stay on file
        pending = (
            await s.execute(
                select(Hold.id).where(
                    Hold.process_id == f"disbursement-{loan.loan_number}-1",
                    Hold.status == "pending",
                )
            )
        ).all()
    assert len(pending) == 1  # the guarantor's lien binds again
    await ledger_ok(kit)


async def test_a_later_payoff_from_savings_is_re_applied_with_what_it_took(
    temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    """More than the payoff from savings took only the payoff. Reversing an earlier repayment
    re-applies that payoff with the money it took, never with what was asked and not taken: the
    loan owes what the reversed repayment had paid, and nothing is overpaid."""
    officer = await kit.staff("loan_officer")
    loan = await active_loan(kit, officer, principal="300.00", repayments=3, disbursed_on=DISBURSED)
    savings_before = await balance(kit, loan.savings_id)
    early = await repay(kit, loan, 50_00, date(2026, 2, 1))
    on = date(2026, 2, 20)
    async with kit.sessions() as s:
        payoff = int((await payoff_quote(s, loan.loan_number, on)).amount.replace(".", ""))
    await repay(kit, loan, 400_00, on)
    state = await kit.loan(loan.loan_id)
    assert (state.state, state.overpaid_minor) == ("closed_obligations_met", 0)
    [_, later] = await repayments_of(kit, loan.loan_id)
    assert (later.amount_minor, later.overpayment_minor) == (payoff, 0)

    await reverse(temporal_client, worker, early)

    state = await kit.loan(loan.loan_id)
    assert (state.state, state.overpaid_minor, state.closed_on) == ("active", 0, None)
    [_, later] = await repayments_of(kit, loan.loan_id)
    assert (later.amount_minor, later.overpayment_minor) == (payoff, 0)
    # Savings gave the payoff and got the reversed 50.00 back; nothing else moved.
    assert await balance(kit, loan.savings_id) == savings_before - payoff
    async with kit.sessions() as s:
        owed = await payoff_quote(s, loan.loan_number, on)
    assert owed.principal != "0.00"
    await ledger_ok(kit)


async def test_a_disbursement_is_undone_only_while_nothing_was_repaid(
    temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    officer = await kit.staff("loan_officer")
    repaid = await active_loan(kit, officer, disbursed_on=DISBURSED)
    await repay(kit, repaid, 20_00, date(2026, 2, 1))
    async with kit.sessions() as s:
        _, checks, refusal = await check_reversible(
            s, f"disbursement-{repaid.loan_number}-1:disburse"
        )
    assert refusal is not None and refusal.code == ErrorCode.LOAN_STATE
    assert "has repayments" in refusal.detail and not checks[-1].ok

    # 600.00: within the first reversal tier, one approval completes it.
    loan = await active_loan(
        kit, officer, principal="600.00", disbursed_on=DISBURSED, lien_minor=50_00
    )
    savings_before = await balance(kit, loan.savings_id)
    await reverse(temporal_client, worker, f"disbursement-{loan.loan_number}-1:disburse")

    assert await balance(kit, loan.loan_account_id) == 0
    assert await balance(kit, loan.savings_id) == savings_before - 600_00
    assert loan.lien_id is not None and await hold_status(kit, loan.lien_id) == "voided"
    paid, state = await book(kit, loan.loan_id)
    assert (paid, state) == ([], "approved")
    assert ("disbursement_undone", "approved") in await trail(kit, loan.loan_id)
    await ledger_ok(kit)


async def test_a_payoff_gives_back_prepaid_interest_and_its_reversal_takes_it_again(
    temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    officer = await kit.staff("loan_officer")
    loan = await active_loan(kit, officer, principal="600.00", repayments=6, disbursed_on=DISBURSED)
    income = kit.factory.gl(INTEREST_INCOME.number)
    income_before = await balance(kit, income)
    savings_before = await balance(kit, loan.savings_id)
    await repay(kit, loan, 250_00, date(2026, 1, 20))  # runs into installment 2's interest
    prepaid = await book(kit, loan.loan_id)
    on = date(2026, 1, 25)
    async with kit.sessions() as s:
        quote = await payoff_quote(s, loan.loan_number, on)
    assert quote.interest_refunded != "0.00"
    closing = await repay(kit, loan, int(quote.amount.replace(".", "")), on)

    paid, state = await book(kit, loan.loan_id)
    assert state == "closed_obligations_met" and all(p[4] for p in paid)
    earned = sum(p[1] for p in paid)  # interest kept: only the days borrowed
    assert await balance(kit, income) - income_before == earned
    assert savings_before - await balance(kit, loan.savings_id) == 600_00 + earned
    assert await balance(kit, loan.loan_account_id) == 0
    await ledger_ok(kit)

    await reverse(temporal_client, worker, closing)
    assert await book(kit, loan.loan_id) == prepaid  # the prepaid interest is paid again
    await ledger_ok(kit)


async def test_undoing_a_payout_to_another_bank_is_refused(kit: LoanKit) -> None:
    """The money left the institution: undoing the disbursement would book back money it does
    not hold, so the reversal is refused until the payout is recovered."""
    officer = await kit.staff("loan_officer")
    loan = await active_loan(kit, officer, disbursed_on=DISBURSED)
    journal_id = f"disbursement-{loan.loan_number}-1:disburse"

    async def paid_out(session: AsyncSession) -> None:
        session.add(
            Disbursement(
                loan_id=loan.loan_id,
                attempt=1,
                workflow_id=f"disbursement-{loan.loan_number}-1",
                status="completed",
                destination="external",
                external_account={"bank_code": "EXBANK01", "account_number": "0012345678"},
                amount_minor=1200_00,
                disbursed_on=DISBURSED,
                journal_id=journal_id,
                requested_by="manager1",
            )
        )

    await in_transaction(kit.sessions, paid_out)
    async with kit.sessions() as s:
        _, checks, refusal = await check_reversible(s, journal_id)
    assert refusal is not None and refusal.code == ErrorCode.NOT_REVERSIBLE
    assert "recover the payout first" in refusal.detail and not checks[-1].ok
    assert (await book(kit, loan.loan_id))[1] == "active"
