"""The Disbursement saga on the real Temporal dev server, the real worker, Postgres and a real
local payment rail: postings, liens, schedule, payout, and compensation when the payout fails."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

from sqlalchemy import select
from temporalio.client import Client

from activities.ledger.chart import PAYMENT_CLEARING, SETTLEMENT_BANK
from activities.loan_book import loan_schedule
from activities.tables import Loan, Notification
from schemas.disbursements import DisbursementState, Stage
from schemas.settings import Settings
from tests.loans.conftest import LoanKit
from tests.loans.disbursement_kit import (
    BANK,
    Books,
    approved_loan,
    rail_worker,
    saga_input,
    start_saga,
)
from tests.loans.fake_rail import running_rail
from tests.workflows.conftest import record_history

# The payout deadline in seconds rather than minutes; one attempt may take a second.
DEADLINE, ATTEMPT = timedelta(seconds=4), timedelta(seconds=1)


async def result(handle: object) -> DisbursementState:
    state: DisbursementState = await handle.result()  # type: ignore[attr-defined]
    return state


async def test_to_savings_posts_liens_schedules_activates_and_notifies(
    temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    books = Books(kit)
    loan = await approved_loan(kit, temporal_client, worker)
    fees_before = await books.fee_income()
    on = date.today()
    handle = await start_saga(temporal_client, worker, saga_input(loan, on=on))
    state = await result(handle)
    wf = handle.id
    assert (state.status, state.stage, state.journal_id) == (
        "completed",
        Stage.COMPLETED,
        f"{wf}:disburse",
    )
    async with kit.sessions() as s:
        row = await s.scalar(select(Loan).where(Loan.id == loan.inp.loan_id))
    assert row is not None and row.ledger_account_id is not None
    assert (row.state, row.stage, row.disbursed_on) == ("active", "disbursed", on)
    # loan 800.00 owed; savings 1,000.00 + 800.00 - the 10.00 fee; fee income +10.00
    assert await books.balance(row.ledger_account_id) == -800_00
    assert await books.balance(loan.savings_id) == 1_790_00
    assert await books.fee_income() - fees_before == 10_00
    # the schedule runs from the disbursement date
    expected = loan_schedule(row, on).installments
    rows = await books.installments(row.id)
    assert [(i.number, i.due_on, i.principal_minor, i.interest_minor) for i in rows] == [
        (i.number, i.due_date, i.principal_minor, i.interest_minor) for i in expected
    ]
    assert len(rows) == 12 and sum(i.principal_minor for i in rows) == 800_00
    # the guarantor's 300.00 is liened (pending), not taken
    (lien,) = await books.holds(wf)
    assert (lien.id, lien.status, lien.amount_minor, lien.debit_account_id) == (
        f"{wf}:lien:{loan.guarantor}",
        "pending",
        300_00,
        loan.guarantor_savings_id,
    )
    guarantor = await books.account(loan.guarantor_savings_id)
    assert (guarantor.debits_pending_minor, await books.balance(guarantor.id)) == (300_00, 500_00)
    (d,) = await books.disbursements(row.id)
    assert (d.status, d.amount_minor, d.fee_minor, d.journal_id) == (
        "completed",
        800_00,
        10_00,
        f"{wf}:disburse",
    )
    journal = await books.journal(f"{wf}:disburse")
    assert journal is not None and journal.kind == "loan_disbursement"
    async with kit.sessions() as s:
        mail = await s.scalar(select(Notification).where(Notification.process_id == wf))
    assert mail is not None and mail.template == "loan_disbursed"
    assert "800.00" in mail.body_text and rows[0].due_on.isoformat() in mail.body_text
    events = [e.event for e in await kit.events(row.id)]
    assert events[-2:] == ["disbursement_started", "disbursed"]
    assert await books.verified()
    await record_history(handle, "disbursement_savings")


async def test_external_payout_accepted_moves_clearing_to_the_bank(
    temporal_client: Client, worker: str, kit: LoanKit, settings: Settings
) -> None:
    books = Books(kit)
    chart = kit.factory.chart
    loan = await approved_loan(kit, temporal_client, worker)
    clearing_before = await books.balance(chart[PAYMENT_CLEARING.number])
    bank_before = await books.balance(chart[SETTLEMENT_BANK.number])
    with running_rail("accept") as rail:
        async with rail_worker(temporal_client, settings, kit, rail.url) as queue:
            inp = saga_input(loan, destination="external", external_account=BANK)
            handle = await start_saga(temporal_client, queue, inp)
            state = await result(handle)
    assert state.status == "completed"
    (payout,) = rail.payouts.values()
    assert state.payout_reference == payout["reference"]
    assert (payout["amount"], payout["account_number"], payout["currency"]) == (
        "800.00",
        BANK.account_number,
        "USD",
    )
    assert [r["key"] for r in rail.requests] == [handle.id]
    # clearing is back where it was; the settlement bank paid 800.00; savings only paid the fee
    assert await books.balance(chart[PAYMENT_CLEARING.number]) == clearing_before
    assert await books.balance(chart[SETTLEMENT_BANK.number]) - bank_before == 800_00
    assert await books.balance(loan.savings_id) == 990_00
    (d,) = await books.disbursements(loan.inp.loan_id)
    assert (d.status, d.payout_reference) == ("completed", payout["reference"])
    assert await books.count_journals(handle.id, "loan_payout") == 1
    assert await books.verified()
    await record_history(handle, "disbursement_external_payout")


async def test_rail_rejection_compensates_then_attempt_two_succeeds(
    temporal_client: Client, worker: str, kit: LoanKit, settings: Settings
) -> None:
    books = Books(kit)
    loan = await approved_loan(kit, temporal_client, worker)
    fees_before = await books.fee_income()
    with running_rail("reject") as rail:
        async with rail_worker(temporal_client, settings, kit, rail.url) as queue:
            inp = saga_input(loan, destination="external", external_account=BANK)
            first = await start_saga(temporal_client, queue, inp)
            state = await result(first)
            assert state.status == "compensated" and state.stage == Stage.COMPENSATED
            assert state.compensated_steps == ["liens", "journal", "schedule"]
            assert "PayoutRejected" in state.failure_reason and "is closed" in state.failure_reason
            await compensated_books(kit, books, loan.inp.loan_id, first.id, fees_before)
            assert await books.balance(loan.savings_id) == 1_000_00
            assert await books.verified()
            await record_history(first, "disbursement_compensated_rejected")
            # staff try again: attempt 2, to savings this time
            second = await start_saga(temporal_client, queue, saga_input(loan, 2))
            assert (await result(second)).status == "completed"
    d1, d2 = await books.disbursements(loan.inp.loan_id)
    assert (d1.status, d2.status, d2.attempt) == ("compensated", "completed", 2)
    assert (await kit.loan(loan.inp.loan_id)).state == "active"
    assert len(await books.installments(loan.inp.loan_id)) == 12
    assert [h.status for h in await books.holds(second.id)] == ["pending"]
    assert await books.verified()


async def compensated_books(
    kit: LoanKit, books: Books, loan_id: int, wf: str, fees_before: int
) -> None:
    """After compensation: reversed journal, voided liens, no schedule, loan approved again."""
    reversal = await books.journal(f"{wf}:compensate")
    assert reversal is not None and reversal.reverses_journal_id == f"{wf}:disburse"
    assert [h.status for h in await books.holds(wf)] == ["voided"]
    assert await books.installments(loan_id) == []
    assert await books.fee_income() == fees_before
    (d,) = [d for d in await books.disbursements(loan_id) if d.workflow_id == wf]
    assert d.status == "compensated" and d.failure_reason
    loan = await kit.loan(loan_id)
    assert (loan.state, loan.stage) == ("approved", "approved")
    last = (await kit.events(loan_id))[-1]
    assert (last.event, last.reason) == ("disbursement_compensated", d.failure_reason)


async def test_rail_silent_until_the_deadline_compensates(
    temporal_client: Client, worker: str, kit: LoanKit, settings: Settings
) -> None:
    books = Books(kit)
    loan = await approved_loan(kit, temporal_client, worker)
    fees_before = await books.fee_income()
    with running_rail("hang") as rail:
        async with rail_worker(temporal_client, settings, kit, rail.url) as queue:
            inp = saga_input(
                loan,
                destination="external",
                external_account=BANK,
                payout_timeout=DEADLINE,
                payout_attempt_timeout=ATTEMPT,
            )
            handle = await start_saga(temporal_client, queue, inp)
            state = await result(handle)
    assert state.status == "compensated"
    assert state.failure_reason == "payout not accepted within 0:00:04"
    assert len(rail.requests) >= 2 and {r["key"] for r in rail.requests} == {handle.id}
    await compensated_books(kit, books, loan.inp.loan_id, handle.id, fees_before)
    assert await books.verified()
    await record_history(handle, "disbursement_compensated_timeout")


async def test_two_concurrent_attempts_make_one_disbursement(
    temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    books = Books(kit)
    loan = await approved_loan(kit, temporal_client, worker)
    handles = await asyncio.gather(
        start_saga(temporal_client, worker, saga_input(loan, 1)),
        start_saga(temporal_client, worker, saga_input(loan, 2)),
    )
    states = sorted([await result(h) for h in handles], key=lambda s: s.status)
    assert [s.status for s in states] == ["completed", "refused"]
    assert "LoanStateConflict" not in states[1].failure_reason  # the detail, not the code
    assert "disburs" in states[1].failure_reason or "active" in states[1].failure_reason
    (d,) = await books.disbursements(loan.inp.loan_id)
    assert d.status == "completed"
    winner = states[0].workflow_id
    assert await books.count_journals(winner, "loan_disbursement") == 1
    assert await books.count_journals(states[1].workflow_id, "loan_disbursement") == 0
    assert await books.verified()


async def test_a_loan_not_approved_is_refused(
    temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    loan = await approved_loan(kit, temporal_client, worker)
    first = await start_saga(temporal_client, worker, saga_input(loan, 1))
    assert (await result(first)).status == "completed"
    again = await start_saga(temporal_client, worker, saga_input(loan, 2))
    state = await result(again)
    assert (state.status, state.stage) == ("refused", Stage.REFUSED)
    assert "is active, not approved" in state.failure_reason
    assert len(await Books(kit).disbursements(loan.inp.loan_id)) == 1
