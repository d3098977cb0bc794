"""What every Disbursement step shares: its row, the loan's trail, the fee rule, and the undo of
each forward step (the saga's compensations). All run inside the caller's transaction with the
loan row locked first, so a step and its compensation never interleave on one loan."""

from __future__ import annotations

import decimal

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from activities import loan_book
from activities.ledger import engine as ledger_engine
from activities.ledger import holds as ledger_holds
from activities.tables import Disbursement, Hold, Loan, LoanTransaction
from domain.money import percent_of
from schemas.errors import BankflowError, ErrorCode
from schemas.ledger import ReversalRequest, VoidHoldRequest
from schemas.loan_products import ProductSnapshot


def disbursement_fee(product: ProductSnapshot, principal_minor: int) -> int:
    """Flat, or a percent of the principal rounded once with the product's rounding mode."""
    if product.disbursement_fee_kind == "flat":
        return product.disbursement_fee_flat_minor
    if product.disbursement_fee_kind == "percent":
        mode = getattr(decimal, f"ROUND_{product.rounding_mode}")
        return percent_of(principal_minor, product.disbursement_fee_pct, mode)
    return 0


async def locked(
    session: AsyncSession, workflow_id: str, loan_number: str
) -> tuple[Loan, Disbursement]:
    """The loan (locked) and this workflow's disbursement row."""
    loan = await loan_book.lock_loan(session, loan_number)
    row = await session.scalar(select(Disbursement).where(Disbursement.workflow_id == workflow_id))
    if row is None or row.loan_id != loan.id:
        raise BankflowError(ErrorCode.NOT_FOUND, f"no disbursement {workflow_id!r}")
    return loan, row


async def void_liens(session: AsyncSession, workflow_id: str, reason: str) -> int:
    """Release this disbursement's guarantor liens still pending; returns how many."""
    ids = list(
        await session.scalars(
            select(Hold.id)
            .where(Hold.process_id == workflow_id, Hold.status == "pending")
            .order_by(Hold.id)
        )
    )
    for hold_id in ids:
        await ledger_holds.void_hold(session, VoidHoldRequest(hold_id=hold_id, reason=reason))
    return len(ids)


async def reverse_postings(session: AsyncSession, row: Disbursement, reason: str) -> str | None:
    """Mirror the disbursement journal (loan, savings or clearing, fee) once, and mark the loan
    transaction reversed by it. Nothing was posted: nothing to reverse."""
    if row.journal_id is None:
        return None
    journal_id = f"{row.workflow_id}:compensate"
    await ledger_engine.reverse_journal(
        session,
        ReversalRequest(
            original_journal_id=row.journal_id,
            journal_id=journal_id,
            value_date=row.disbursed_on,
            description=f"Compensation of {row.workflow_id}: {reason}"[:500],
            process_id=row.workflow_id,
        ),
    )
    await session.execute(
        update(LoanTransaction)
        .where(LoanTransaction.journal_id == row.journal_id)
        .values(reversed_by_journal_id=journal_id)
    )
    return journal_id


async def mark_compensated(
    session: AsyncSession, loan: Loan, row: Disbursement, reason: str
) -> None:
    """The attempt ends compensated; the loan is approved again, waiting for the next attempt."""
    if row.status == "compensated":
        return
    row.status = "compensated"
    row.failure_reason = reason
    row.updated_at = func.now()
    loan_book.mark_undisbursed(loan, f"disbursement failed: {reason}")
    await loan_book.trail(
        session,
        loan,
        row.workflow_id,
        "compensated",
        "disbursement_compensated",
        reason=reason,
        data={"attempt": row.attempt},
    )
