"""What every Disbursement step shares: its row, the loan's trail, the fee rule, and the undo of
each forward step (the saga's compensations). All run inside the caller's transaction with the
loan row locked first, so a step and its compensation never interleave on one loan."""

from __future__ import annotations

import decimal
from collections.abc import Mapping
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from activities import ledger_engine, loan_book
from activities.loan_book_models import Disbursement, LoanTransaction
from activities.loan_models import Loan, LoanEvent
from activities.models import Hold
from schemas.errors import BankflowError, ErrorCode
from schemas.ledger import ReversalRequest, VoidHoldRequest
from schemas.loan_products import ProductSnapshot
from schemas.loans import SYSTEM


def disbursement_fee(product: ProductSnapshot, principal_minor: int) -> int:
    """Flat, or a percent of the principal rounded once with the product's rounding mode."""
    if product.disbursement_fee_kind == "flat":
        return product.disbursement_fee_flat_minor
    if product.disbursement_fee_kind == "percent":
        exact = Decimal(principal_minor) * product.disbursement_fee_pct / 100
        mode = getattr(decimal, f"ROUND_{product.rounding_mode}")
        return int(exact.to_integral_value(rounding=mode))
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


async def trail(
    session: AsyncSession,
    loan: Loan,
    workflow_id: str,
    step: str,
    event: str,
    *,
    actor: str = SYSTEM,
    actor_id: int | None = None,
    reason: str = "",
    to_state: str | None = None,
    data: Mapping[str, object] | None = None,
) -> None:
    """One trail row, `event_id` = `<workflow id>:<step>` (a retry writes nothing), `seq` after
    the loan's last (the caller holds the loan lock, so no other step numbers concurrently)."""
    seq = (
        int(
            await session.scalar(
                select(func.coalesce(func.max(LoanEvent.seq), 0)).where(
                    LoanEvent.loan_id == loan.id
                )
            )
            or 0
        )
        + 1
    )
    inserted = await session.scalar(
        insert(LoanEvent)
        .values(
            event_id=f"{workflow_id}:{step}",
            loan_id=loan.id,
            seq=seq,
            at=func.now(),
            event=event,
            actor=actor,
            actor_id=actor_id,
            from_state=loan.state if to_state else None,
            to_state=to_state,
            reason=reason,
            data=dict(data or {}),
        )
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(LoanEvent.id)
    )
    if inserted is not None:
        loan.last_event_seq = max(loan.last_event_seq, seq)
        loan.updated_at = func.now()


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
        await ledger_engine.void_hold(session, VoidHoldRequest(hold_id=hold_id, reason=reason))
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
    loan.stage = "approved"
    loan.current_details = f"{loan.loan_number}: approved: disbursement failed: {reason}"[:1000]
    await trail(
        session,
        loan,
        row.workflow_id,
        "compensated",
        "disbursement_compensated",
        reason=reason,
        data={"attempt": row.attempt},
    )
