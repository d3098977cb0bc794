"""Tables of the reversal process and of period close.

`ledger_periods` holds the closed accounting months (a month with no row is open); the database
itself refuses a journal dated in one (trigger `journals_period_open`, migration 0004).
`reversal_events` is the append-only case file of every reversal: request, checks, decisions and
result, written by the workflow's activities.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, CheckConstraint, Date, ForeignKey, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from activities.tables.base import Base

# SQLSTATE raised by the `journals_period_open` trigger; the ledger engine maps it to PeriodClosed.
PERIOD_CLOSED_SQLSTATE = "BFP01"
# First key of the advisory lock pair (class, month) that orders postings against a close.
PERIOD_LOCK_CLASS = 0x0BF1


class LedgerPeriod(Base):
    """A closed accounting month. Closing is final: the row is never updated or deleted."""

    __tablename__ = "ledger_periods"
    __table_args__ = (CheckConstraint("extract(day FROM period_start) = 1", name="first_of_month"),)
    period_start: Mapped[date] = mapped_column(Date, primary_key=True, doc="first day of month")
    closed_at: Mapped[datetime] = mapped_column(server_default=func.now())
    closed_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    closed_by: Mapped[str] = mapped_column(String(64))


class ReversalEvent(Base):
    """One step of a reversal case; `event_key` makes a retried activity write it once."""

    __tablename__ = "reversal_events"
    __table_args__ = (
        CheckConstraint(
            "event IN ('requested', 'refused', 'held', 'approved', 'rejected', 'expired', "
            "'completed', 'declined')",
            name="event_known",
        ),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    reversal_id: Mapped[str] = mapped_column(String(200), doc="workflow id: reversal-<journal>")
    request_id: Mapped[str] = mapped_column(String(64))
    event_key: Mapped[str] = mapped_column(String(100), unique=True)
    journal_id: Mapped[str] = mapped_column(ForeignKey("journals.id"), index=True)
    event: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text, default="", server_default="")
    at: Mapped[datetime] = mapped_column(server_default=func.now())
