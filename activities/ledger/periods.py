"""Accounting periods: closing a month so that no journal may be dated in it any more.

The `journals_period_open` trigger (migration 0004) is the enforcement; this module closes
months, says whether one is closed, and lists them. A close takes the month's advisory lock
exclusively, the trigger takes it shared on every journal insert, so a close waits for the
postings of that month already in flight and every later posting sees the close.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from activities.tables import PERIOD_LOCK_CLASS, LedgerPeriod
from domain.periods import period_start
from schemas.errors import BankflowError, ErrorCode
from schemas.reversals import PeriodView


def month_start(day: date) -> date:
    return day.replace(day=1)


def parse_period(value: str) -> date:
    """`2026-10` -> 2026-10-01; anything else is a ValidationError."""
    try:
        return period_start(value)
    except ValueError as exc:
        raise BankflowError(ErrorCode.VALIDATION, f"{value!r} is not a period yyyy-mm") from exc


def _view(row: LedgerPeriod) -> PeriodView:
    return PeriodView(
        period=f"{row.period_start:%Y-%m}",
        status="closed",
        closed_at=row.closed_at,
        closed_by=row.closed_by,
    )


async def is_closed(session: AsyncSession, day: date) -> bool:
    found = await session.scalar(
        select(LedgerPeriod.period_start).where(LedgerPeriod.period_start == month_start(day))
    )
    return found is not None


async def close_period(
    session: AsyncSession, period: date, *, user_id: int | None, username: str
) -> tuple[PeriodView, bool]:
    """Close a month that has ended; closing a closed month again returns it unchanged.
    The second value is True when this call closed it."""
    today = await session.scalar(select(func.current_date()))
    assert today is not None
    if period >= month_start(today):
        raise BankflowError(
            ErrorCode.PERIOD_NOT_ENDED, f"the period {period:%Y-%m} has not ended; it cannot close"
        )
    key = period.year * 12 + period.month
    await session.execute(
        text("SELECT pg_advisory_xact_lock(:cls, :key)"), {"cls": PERIOD_LOCK_CLASS, "key": key}
    )
    inserted = await session.scalar(
        insert(LedgerPeriod)
        .values(period_start=period, closed_by_user_id=user_id, closed_by=username)
        .on_conflict_do_nothing(index_elements=["period_start"])
        .returning(LedgerPeriod.period_start)
    )
    row = await session.get(LedgerPeriod, period)
    assert row is not None
    return _view(row), inserted is not None


async def period_view(session: AsyncSession, period: date) -> PeriodView:
    row = await session.get(LedgerPeriod, period)
    return _view(row) if row else PeriodView(period=f"{period:%Y-%m}", status="open")


async def closed_periods(session: AsyncSession, limit: int = 120) -> list[PeriodView]:
    rows = await session.scalars(
        select(LedgerPeriod).order_by(LedgerPeriod.period_start.desc()).limit(limit)
    )
    return [_view(r) for r in rows]
