"""The loan book (migration 0007): disbursements, the repayment schedule a disbursed loan keeps,
and the loan's own transactions.

The ledger is the truth about money; these tables say what the money means for the loan: which
installment a repayment paid, what is overdue, what each disbursement attempt did. They change
only in the same transaction as the journal that justifies the change.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from activities.tables.base import Base, _in

DISBURSEMENT_STATUSES = ("in_progress", "completed", "compensated", "reversed")
# Attempts that hold the loan: at most one per loan (a partial unique index), so two disbursements
# of one loan cannot both run, whatever the API or Temporal do.
HOLDING_STATUSES = ("in_progress", "completed")
TRANSACTION_KINDS = ("disbursement", "repayment", "penalty", "accrual")


class Disbursement(Base):
    """One attempt to disburse a loan, by the Disbursement workflow `workflow_id`."""

    __tablename__ = "disbursements"
    __table_args__ = (
        CheckConstraint(_in("status", DISBURSEMENT_STATUSES), name="status_known"),
        CheckConstraint(_in("destination", ("savings", "external")), name="destination_known"),
        CheckConstraint("amount_minor > 0 AND fee_minor >= 0", name="amounts"),
        UniqueConstraint("loan_id", "attempt", name="uq_disbursements_loan_attempt"),
        Index(
            "uq_disbursements_loan_holding",
            "loan_id",
            unique=True,
            postgresql_where=text("status IN ('in_progress', 'completed')"),
        ),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    loan_id: Mapped[int] = mapped_column(ForeignKey("loans.id"))
    attempt: Mapped[int] = mapped_column(SmallInteger)
    workflow_id: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    destination: Mapped[str] = mapped_column(String(16))
    savings_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("ledger_accounts.id"), doc="credited (savings) or charged the fee"
    )
    external_account: Mapped[dict[str, Any] | None] = mapped_column(
        JSONB, doc="bank code, account number and name for a payout"
    )
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    fee_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    disbursed_on: Mapped[date] = mapped_column(Date)
    journal_id: Mapped[str | None] = mapped_column(
        ForeignKey("journals.id"), doc="the disbursement journal: principal and fee together"
    )
    payout_reference: Mapped[str | None] = mapped_column(String(200))
    failure_reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    requested_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class LoanInstallment(Base):
    """One installment of a disbursed loan: what it charges and what has been paid of it.

    `interest_waived_minor` is interest a payoff took off (never owed, never paid). Outstanding
    = charged - paid (- waived for interest); the CHECKs keep every part within its charge.
    """

    __tablename__ = "loan_installments"
    __table_args__ = (
        UniqueConstraint("loan_id", "number", name="uq_loan_installments_loan_number"),
        CheckConstraint(
            "principal_minor >= 0 AND interest_minor >= 0 AND fee_minor >= 0 "
            "AND penalty_minor >= 0",
            name="charges_nonnegative",
        ),
        CheckConstraint(
            "principal_paid_minor BETWEEN 0 AND principal_minor "
            "AND fee_paid_minor BETWEEN 0 AND fee_minor "
            "AND penalty_paid_minor BETWEEN 0 AND penalty_minor "
            "AND interest_paid_minor >= 0 AND interest_waived_minor >= 0 "
            "AND interest_paid_minor + interest_waived_minor <= interest_minor",
            name="paid_within_charge",
        ),
        Index(
            "ix_loan_installments_due_open", "due_on", postgresql_where=text("completed_on IS NULL")
        ),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    loan_id: Mapped[int] = mapped_column(ForeignKey("loans.id"))
    number: Mapped[int] = mapped_column(SmallInteger)
    from_on: Mapped[date] = mapped_column(Date)
    due_on: Mapped[date] = mapped_column(Date)
    principal_minor: Mapped[int] = mapped_column(BigInteger)
    interest_minor: Mapped[int] = mapped_column(BigInteger)
    fee_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    penalty_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    principal_paid_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    interest_paid_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    fee_paid_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    penalty_paid_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    interest_waived_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    completed_on: Mapped[date | None] = mapped_column(Date, doc="paid in full on")


class LoanTransaction(Base):
    """A money event of one loan and how it split: disbursement, repayment, a day's penalty or
    interest accrual. `allocation` keeps a repayment's per-installment portions so a reversal can
    re-apply the later repayments as if the reversed one never happened."""

    __tablename__ = "loan_transactions"
    __table_args__ = (
        CheckConstraint(_in("kind", TRANSACTION_KINDS), name="kind_known"),
        CheckConstraint(
            "amount_minor >= 0 AND principal_minor >= 0 AND interest_minor >= 0 "
            "AND fee_minor >= 0 AND penalty_minor >= 0 AND overpayment_minor >= 0",
            name="amounts_nonnegative",
        ),
        Index("ix_loan_transactions_loan", "loan_id", "value_date", "id"),
        Index(
            # Led by the date: the daily job counts and sums one date's rows (migration 0011).
            "uq_loan_transactions_daily",
            "value_date",
            "loan_id",
            "kind",
            unique=True,
            postgresql_where=text("kind IN ('penalty', 'accrual')"),
        ),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    loan_id: Mapped[int] = mapped_column(ForeignKey("loans.id"))
    kind: Mapped[str] = mapped_column(String(16))
    value_date: Mapped[date] = mapped_column(Date)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    principal_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    interest_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    fee_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    penalty_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    overpayment_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    source: Mapped[str | None] = mapped_column(String(16), doc="repayment: savings or cash")
    journal_id: Mapped[str] = mapped_column(
        ForeignKey("journals.id"),
        doc="the journal that carries it now (a daily batch journal "
        "carries many loans; a re-applied repayment points at its replacement)",
    )
    reversed_by_journal_id: Mapped[str | None] = mapped_column(ForeignKey("journals.id"))
    workflow_id: Mapped[str | None] = mapped_column(String(200))
    allocation: Mapped[dict[str, Any]] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb"), doc="portions and waiver"
    )
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ParSnapshot(Base):
    """Portfolio at risk on a business date, per currency and ageing bucket (the daily job's
    figures, kept so a report for a past date shows what was known then)."""

    __tablename__ = "par_snapshots"
    __table_args__ = (
        UniqueConstraint("business_date", "currency", "bucket", name="uq_par_snapshots_day"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    business_date: Mapped[date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(ForeignKey("currencies.code"))
    bucket: Mapped[str] = mapped_column(String(16))
    loans: Mapped[int] = mapped_column(Integer)
    outstanding_principal_minor: Mapped[int] = mapped_column(BigInteger)
    overdue_minor: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
