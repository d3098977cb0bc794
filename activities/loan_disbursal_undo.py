"""Undoing a loan's disbursal, as a reversal of its disbursement journal does ("undo disbursal",
only while no repayment stands): the loan goes back to approved, its liens voided, its schedule
removed, and the interest and penalties the daily job booked taken back. Same transaction as the
mirror journal; called from `activities.loan_reversal`.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from activities import loan_book
from activities.ledger import engine as ledger_engine
from activities.ledger import holds as ledger_holds
from activities.ledger.chart import (
    INTEREST_INCOME,
    INTEREST_RECEIVABLE,
    PENALTIES_RECEIVABLE,
    PENALTY_INCOME,
)
from activities.tables import Disbursement, Hold, Loan, LoanTransaction
from schemas.ledger import JournalRequest, JournalResult, PostingLine, VoidHoldRequest


async def undo_disbursement(
    session: AsyncSession,
    txn: LoanTransaction,
    original: JournalResult,
    reversal_id: str,
    value_date: date,
) -> None:
    """The loan side of reversing its disbursement `txn` (its mirror journal just posted)."""
    loan = await session.get(Loan, txn.loan_id, with_for_update=True)
    assert loan is not None
    txn.reversed_by_journal_id = f"{reversal_id}:reverse"
    row = await session.scalar(
        select(Disbursement).where(Disbursement.journal_id == original.journal_id)
    )
    if row is not None:
        row.status = "reversed"
    holds = await session.scalars(
        select(Hold.id).where(Hold.process_id == txn.workflow_id, Hold.status == "pending")
    )
    for hold_id in holds.all():
        await ledger_holds.void_hold(
            session, VoidHoldRequest(hold_id=hold_id, reason="disbursement undone")
        )
    await _take_back_accruals(session, loan, reversal_id, value_date)
    await loan_book.drop_schedule(session, loan)
    await session.execute(
        update(LoanTransaction)
        .where(
            LoanTransaction.loan_id == loan.id,
            LoanTransaction.kind.in_(("penalty", "accrual")),
            LoanTransaction.reversed_by_journal_id.is_(None),
        )
        .values(reversed_by_journal_id=f"{reversal_id}:reverse")
    )
    await loan_book.trail(
        session,
        loan,
        reversal_id,
        "loan",
        "disbursement_undone",
        actor="reversal",
        from_state=loan.state,
        to_state="approved",
        reason=f"disbursement {original.journal_id} reversed",
        data={"reversal_id": reversal_id},
    )
    loan_book.mark_undisbursed(loan, f"disbursement undone by {reversal_id}")


async def _take_back_accruals(
    session: AsyncSession, loan: Loan, reversal_id: str, value_date: date
) -> None:
    """Interest and penalties the daily job booked as income on a loan that never was."""
    gl = await loan_book.gl_ids(
        session,
        loan.currency,
        (INTEREST_INCOME, INTEREST_RECEIVABLE, PENALTY_INCOME, PENALTIES_RECEIVABLE),
    )
    pairs = (
        (
            gl[INTEREST_INCOME.number],
            gl[INTEREST_RECEIVABLE.number],
            loan.interest_receivable_minor,
        ),
        (gl[PENALTY_INCOME.number], gl[PENALTIES_RECEIVABLE.number], loan.penalty_receivable_minor),
    )
    lines = [
        PostingLine(debit_account_id=d, credit_account_id=c, amount_minor=a, currency=loan.currency)
        for d, c, a in pairs
        if a > 0
    ]
    if lines:
        await ledger_engine.post_journal(
            session,
            JournalRequest(
                journal_id=f"{reversal_id}:accruals",
                kind="loan_accrual_reversal",
                value_date=value_date,
                postings=lines,
                description=f"Accruals of loan {loan.loan_number} taken back (disbursement undone)",
                process_id=reversal_id,
            ),
        )
    loan.interest_receivable_minor = loan.penalty_receivable_minor = 0
    loan.interest_recognized_minor = 0
    loan.penalty_exact = Decimal(0)
