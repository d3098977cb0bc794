"""Holds: funds reserved as pending debits (counted against the no-overdraft rule) and later
posted as a journal or voided, exactly once each, inside the caller's transaction.

The hold row, locked FOR UPDATE, is what makes posting or voiding happen once; the accounts are
locked by the engine in ascending id order like any journal's.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from activities import metrics
from activities.ledger.checks import Deltas
from activities.ledger.engine import apply_deltas, load_journal, write_journal
from activities.tables import Hold
from schemas.errors import BankflowError, ErrorCode
from schemas.ledger import (
    HoldRequest,
    HoldResult,
    JournalRequest,
    JournalResult,
    PostHoldRequest,
    PostingLine,
    VoidHoldRequest,
    hold_hash,
)


def _hold_result(hold: Hold) -> HoldResult:
    return HoldResult(
        hold_id=hold.id,
        status=hold.status,
        amount_minor=hold.amount_minor,
        currency=hold.currency,
        journal_id=hold.journal_id,
    )


async def place_hold(session: AsyncSession, req: HoldRequest) -> HoldResult:
    """Reserve funds: a pending posting counted against the no-overdraft rule until resolved."""
    if req.debit_account_id == req.credit_account_id:
        raise BankflowError(ErrorCode.INVALID_POSTING, "a hold needs two different accounts")
    digest = hold_hash(req)
    inserted = await session.scalar(
        insert(Hold)
        .values(
            id=req.hold_id,
            debit_account_id=req.debit_account_id,
            credit_account_id=req.credit_account_id,
            amount_minor=req.amount_minor,
            currency=req.currency,
            description=req.description,
            content_hash=digest,
            process_id=req.process_id,
        )
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(Hold.id)
    )
    if inserted is None:
        existing = await session.get(Hold, req.hold_id)
        assert existing is not None
        if existing.content_hash != digest:
            raise BankflowError(
                ErrorCode.HOLD_CONFLICT, f"hold {req.hold_id!r} exists with different content"
            )
        metrics.replayed(session, "hold")
        return _hold_result(existing)
    deltas = Deltas()
    deltas.pend(req.debit_account_id, req.credit_account_id, req.amount_minor, req.currency)
    await apply_deltas(session, deltas)
    metrics.hold_event(session, "placed")
    hold = await session.get(Hold, req.hold_id)
    assert hold is not None
    return _hold_result(hold)


async def _lock_hold(session: AsyncSession, hold_id: str) -> Hold:
    hold = await session.scalar(select(Hold).where(Hold.id == hold_id).with_for_update())
    if hold is None:
        raise BankflowError(ErrorCode.HOLD_NOT_FOUND, f"no hold {hold_id!r}")
    return hold


async def post_hold(session: AsyncSession, req: PostHoldRequest) -> JournalResult:
    """Turn a pending hold into a posted journal, exactly once (the hold row is the lock)."""
    hold = await _lock_hold(session, req.hold_id)
    if hold.status == "posted" and hold.journal_id == req.journal_id:
        metrics.replayed(session, "hold")
        return await load_journal(session, req.journal_id)
    if hold.status != "pending":
        raise BankflowError(
            ErrorCode.HOLD_ALREADY_RESOLVED, f"hold {hold.id!r} is already {hold.status}"
        )
    line = PostingLine(
        debit_account_id=hold.debit_account_id,
        credit_account_id=hold.credit_account_id,
        amount_minor=hold.amount_minor,
        currency=hold.currency,
    )
    journal = JournalRequest(
        journal_id=req.journal_id,
        kind=req.kind,
        value_date=req.value_date,
        postings=[line],
        description=req.description or hold.description,
        process_id=hold.process_id,
        metadata={"hold_id": hold.id},
    )
    deltas = Deltas()
    deltas.pend(line.debit_account_id, line.credit_account_id, -line.amount_minor, line.currency)
    deltas.post(line.debit_account_id, line.credit_account_id, line.amount_minor, line.currency)
    # A closed account still takes what was held for it before it closed.
    if await write_journal(session, journal, deltas, check_open=False) is None:
        raise BankflowError(ErrorCode.JOURNAL_CONFLICT, f"journal {req.journal_id!r} exists")
    metrics.journal_posted(session, journal.kind, journal.postings)
    metrics.hold_event(session, "posted")
    await session.execute(
        update(Hold)
        .where(Hold.id == hold.id)
        .values(status="posted", journal_id=req.journal_id, resolved_at=func.now())
    )
    return await load_journal(session, req.journal_id, created=True)


async def void_hold(session: AsyncSession, req: VoidHoldRequest) -> HoldResult:
    """Release a pending hold, exactly once; voiding a voided hold again is a no-op."""
    hold = await _lock_hold(session, req.hold_id)
    if hold.status == "voided":
        metrics.replayed(session, "hold")
        return _hold_result(hold)
    if hold.status != "pending":
        raise BankflowError(
            ErrorCode.HOLD_ALREADY_RESOLVED, f"hold {hold.id!r} is already {hold.status}"
        )
    deltas = Deltas()
    deltas.pend(hold.debit_account_id, hold.credit_account_id, -hold.amount_minor, hold.currency)
    await apply_deltas(session, deltas, check_open=False)
    metrics.hold_event(session, "voided")
    await session.execute(
        update(Hold)
        .where(Hold.id == hold.id)
        .values(status="voided", void_reason=req.reason, resolved_at=func.now())
    )
    await session.refresh(hold)
    return _hold_result(hold)
