"""Tables of savings products and month-end interest (migration 0005).

`interest_postings` is the proof of exactly-once: its primary key (account_id, period) admits one
row per account and month, written in the same transaction as the journal that posts it.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from activities.tables.base import Base, _in

RATE = Numeric(12, 9)
AMOUNT_9DP = Numeric(30, 9)


class SavingsProduct(Base):
    __tablename__ = "savings_products"
    __table_args__ = (
        CheckConstraint(
            _in("calculation", ("daily_balance", "average_daily_balance")), name="calculation_known"
        ),
        CheckConstraint(_in("compounding", ("daily", "monthly")), name="compounding_known"),
        CheckConstraint(_in("posting", ("monthly", "quarterly", "annually")), name="posting_known"),
        CheckConstraint("days_in_year IN (360, 365)", name="days_in_year_known"),
        CheckConstraint("annual_rate >= 0 AND withholding_tax_rate >= 0", name="rates_nonnegative"),
        CheckConstraint("min_balance_minor >= 0", name="min_balance_nonnegative"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(ForeignKey("currencies.code"))
    annual_rate: Mapped[Decimal] = mapped_column(RATE, doc="fraction: 0.045 is 4.5 % a year")
    tiers: Mapped[list[Any]] = mapped_column(
        JSONB,
        default=list,
        server_default=text("'[]'::jsonb"),
        doc='[{"min_balance_minor": int, "annual_rate": "0.05"}]: rate for the whole balance',
    )
    calculation: Mapped[str] = mapped_column(String(32))
    compounding: Mapped[str] = mapped_column(String(16))
    posting: Mapped[str] = mapped_column(String(16))
    days_in_year: Mapped[int] = mapped_column(SmallInteger)
    min_balance_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    withholding_tax_rate: Mapped[Decimal] = mapped_column(RATE, doc="fraction of posted interest")
    rounding: Mapped[str] = mapped_column(String(16), doc="decimal rounding mode at posting")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class SavingsAccount(Base):
    """A savings ledger account on a product, 1:1 with its ledger_accounts row."""

    __tablename__ = "savings_accounts"
    __table_args__ = (Index("ix_savings_accounts_product", "product_id"),)
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"), primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("savings_products.id"))
    opened_on: Mapped[date] = mapped_column(Date, doc="first day that accrues interest")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class InterestPosting(Base):
    """One account's month: interest earned, posted and carried. One row per (account, period)."""

    __tablename__ = "interest_postings"
    __table_args__ = (
        CheckConstraint("period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'", name="period_format"),
        CheckConstraint("posted_minor >= 0 AND tax_minor >= 0", name="amounts_nonnegative"),
        # (period, account): month-end looks rows up by period and by account in one index.
        PrimaryKeyConstraint("period", "account_id"),
    )
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"), primary_key=True)
    period: Mapped[str] = mapped_column(String(7), primary_key=True, doc="YYYY-MM")
    journal_id: Mapped[str | None] = mapped_column(
        String(200), doc="the batch journal that posted it; NULL when nothing posted"
    )
    currency: Mapped[str] = mapped_column(String(3))
    earned: Mapped[Decimal] = mapped_column(AMOUNT_9DP, doc="this month's interest, major units")
    posted_minor: Mapped[int] = mapped_column(BigInteger, doc="gross interest credited")
    tax_minor: Mapped[int] = mapped_column(BigInteger, doc="withholding tax debited")
    accrued: Mapped[Decimal] = mapped_column(
        AMOUNT_9DP, doc="earned since the last posting and not yet posted, major units"
    )
    residue: Mapped[Decimal] = mapped_column(
        AMOUNT_9DP, doc="rounding left over at the last posting, carried forward, major units"
    )
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class MonthEndRun(Base):
    """The summary of a month-end period, written when its workflow finishes."""

    __tablename__ = "month_end_runs"
    __table_args__ = (
        CheckConstraint(_in("status", ("running", "completed")), name="status_known"),
    )
    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    workflow_id: Mapped[str] = mapped_column(String(200))
    accounts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    totals: Mapped[list[Any]] = mapped_column(
        JSONB, default=list, server_default=text("'[]'::jsonb"), doc="per currency, minor units"
    )
    started_at: Mapped[datetime] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    duration_s: Mapped[Decimal | None] = mapped_column(Numeric(12, 3))
