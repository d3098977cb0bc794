"""Loan products, loan applications, guarantors and the loan trail (migration 0003).

A loan's `state` uses Fineract's names; `stage` is where its LoanApproval workflow is, kept here
so the read model never has to ask a workflow. `loan_events` is the trail: one row per thing that
happened (who, when, why), written idempotently by the workflow (`event_id` = workflow id + step).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, column_property, mapped_column

from activities.tables.base import Base, _in

LOAN_STATES = (
    "submitted_and_pending_approval",
    "approved",
    "rejected",
    "withdrawn",
    # reached by disbursement and servicing (later processes)
    "active",
    "closed_obligations_met",
    "overpaid",
    "written_off",
)
GUARANTOR_STATUSES = ("pending", "accepted", "declined")


class LoanProduct(Base):
    __tablename__ = "loan_products"
    __table_args__ = (
        CheckConstraint(
            "min_principal_minor > 0 AND min_principal_minor <= max_principal_minor",
            name="principal_range",
        ),
        CheckConstraint(
            "min_repayments > 0 AND min_repayments <= max_repayments", name="repayments_range"
        ),
        CheckConstraint(_in("repayment_frequency", ("days", "weeks", "months")), name="frequency"),
        CheckConstraint(_in("interest_method", ("declining_balance", "flat")), name="method"),
        CheckConstraint(
            _in("amortization", ("equal_installments", "equal_principal")), name="amortization"
        ),
        CheckConstraint(
            _in("interest_calculation_period", ("same_as_repayment", "daily")), name="period"
        ),
        CheckConstraint(_in("days_in_year", ("actual", "360", "364", "365")), name="days_in_year"),
        CheckConstraint(_in("days_in_month", ("actual", "30")), name="days_in_month"),
        CheckConstraint(
            "disbursement_fee_kind IS NULL OR disbursement_fee_kind IN ('flat', 'percent')",
            name="fee_kind",
        ),
        CheckConstraint(_in("status", ("active", "retired")), name="status_known"),
        CheckConstraint(_in("accounting", ("cash", "accrual")), name="accounting_known"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(ForeignKey("currencies.code"))
    min_principal_minor: Mapped[int] = mapped_column(BigInteger)
    max_principal_minor: Mapped[int] = mapped_column(BigInteger)
    min_repayments: Mapped[int] = mapped_column(SmallInteger)
    max_repayments: Mapped[int] = mapped_column(SmallInteger)
    annual_interest_rate: Mapped[Decimal] = mapped_column(
        Numeric(12, 6), doc="nominal rate, percent per year"
    )
    repayment_every: Mapped[int] = mapped_column(SmallInteger)
    repayment_frequency: Mapped[str] = mapped_column(String(8))
    interest_method: Mapped[str] = mapped_column(String(24))
    amortization: Mapped[str] = mapped_column(String(24))
    interest_calculation_period: Mapped[str] = mapped_column(String(24))
    days_in_year: Mapped[str] = mapped_column(String(8))
    days_in_month: Mapped[str] = mapped_column(String(8))
    installment_multiple_minor: Mapped[int] = mapped_column(
        BigInteger, doc="installments round to a multiple of this; 0 = no rounding"
    )
    rounding_mode: Mapped[str] = mapped_column(String(12), doc="decimal.ROUND_<mode>")
    grace_on_principal: Mapped[int] = mapped_column(SmallInteger, doc="periods")
    grace_on_interest_payment: Mapped[int] = mapped_column(SmallInteger, doc="periods")
    grace_on_interest_charged: Mapped[int] = mapped_column(SmallInteger, doc="periods")
    disbursement_fee_kind: Mapped[str | None] = mapped_column(String(8))
    disbursement_fee_flat_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    disbursement_fee_pct: Mapped[Decimal] = mapped_column(
        Numeric(9, 6), default=Decimal(0), doc="percent of the principal"
    )
    penalty_rate: Mapped[Decimal] = mapped_column(
        Numeric(12, 6), doc="percent per year on overdue amounts"
    )
    auto_disburse: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false"), doc="disburse on approval"
    )
    accounting: Mapped[str] = mapped_column(
        String(8),
        default="cash",
        server_default="cash",
        doc="cash or accrual (interest, penalties)",
    )
    guarantee_rules: Mapped[dict[str, Any]] = mapped_column(JSONB, doc="GuaranteeRules")
    eligibility_rules: Mapped[dict[str, Any]] = mapped_column(JSONB, doc="EligibilityRules")
    approval_tiers: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, doc="ApprovalTier list, bounds in minor units, ascending"
    )
    status: Mapped[str] = mapped_column(String(12), default="active", server_default="active")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class LoanTerms(Base):
    """The product rules a loan runs under, as they stood at submission (ProductSnapshot): apart
    from `loans` because they never change while the loan row changes daily (the daily job's
    servicing), and at 1.65 KB they were 85 % of that row, rewritten with each update (migration
    0012)."""

    __tablename__ = "loan_terms"
    loan_id: Mapped[int] = mapped_column(ForeignKey("loans.id"), primary_key=True)
    product_snapshot: Mapped[dict[str, Any]] = mapped_column(JSONB)


class Loan(Base):
    __tablename__ = "loans"
    __table_args__ = (
        CheckConstraint(_in("state", LOAN_STATES), name="state_known"),
        CheckConstraint("principal_minor > 0 AND repayments > 0", name="terms_positive"),
        UniqueConstraint("entered_by_id", "idempotency_key", name="uq_loans_entered_by_key"),
        Index("ix_loans_member", "member_id"),
        Index("ix_loans_active", "id", postgresql_where=text("state = 'active'")),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    loan_number: Mapped[str] = mapped_column(String(20), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("loan_products.id"))
    currency: Mapped[str] = mapped_column(ForeignKey("currencies.code"))
    requested_principal_minor: Mapped[int] = mapped_column(BigInteger)
    requested_repayments: Mapped[int] = mapped_column(SmallInteger)
    principal_minor: Mapped[int] = mapped_column(
        BigInteger, doc="current terms: the request, as amended or approved"
    )
    repayments: Mapped[int] = mapped_column(SmallInteger)
    purpose: Mapped[str] = mapped_column(Text, default="", server_default="")
    expected_disbursement_on: Mapped[date] = mapped_column(Date)
    # Read with the loan (one index probe of loan_terms); written by the submission only, so a
    # flush of the loan never makes it stale (no reload, which an async session could not do).
    product_snapshot: Mapped[dict[str, Any]] = column_property(
        select(LoanTerms.product_snapshot).where(LoanTerms.loan_id == id).scalar_subquery(),
        expire_on_flush=False,
        doc="ProductSnapshot at submission: the rules this application runs under",
    )
    state: Mapped[str] = mapped_column(String(40))
    stage: Mapped[str] = mapped_column(String(40))
    assigned_role: Mapped[str | None] = mapped_column(String(32))
    current_details: Mapped[str] = mapped_column(Text, default="", server_default="")
    eligibility: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, default=list, doc="the last eligibility checks: rule, passed, detail"
    )
    overdue_since: Mapped[date | None] = mapped_column(
        Date, doc="set by arrears ageing; an active loan with it is in arrears"
    )
    # --- the loan book (migration 0007), kept by disbursement, repayments and the daily job ---
    ledger_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("ledger_accounts.id"), doc="the member loan account (principal outstanding)"
    )
    disbursed_on: Mapped[date | None] = mapped_column(Date)
    closed_on: Mapped[date | None] = mapped_column(Date)
    days_past_due: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    arrears_bucket: Mapped[str] = mapped_column(
        String(16), default="current", server_default="current"
    )
    overdue_minor: Mapped[int] = mapped_column(
        BigInteger,
        default=0,
        server_default="0",
        doc="principal and interest overdue as of serviced_through (the PAR snapshot's figure)",
    )
    serviced_through: Mapped[date | None] = mapped_column(
        Date, doc="last business date the daily loan job processed for this loan"
    )
    penalty_exact: Mapped[Decimal] = mapped_column(
        Numeric(30, 12),
        default=Decimal(0),
        server_default="0",
        doc="penalties earned, unrounded; charged = round(this) so the residue carries forward",
    )
    interest_recognized_minor: Mapped[int] = mapped_column(
        BigInteger, default=0, server_default="0", doc="accrual: interest booked as income"
    )
    interest_receivable_minor: Mapped[int] = mapped_column(
        BigInteger, default=0, server_default="0", doc="accrual: accrued interest not yet paid"
    )
    penalty_receivable_minor: Mapped[int] = mapped_column(
        BigInteger, default=0, server_default="0", doc="accrual: penalties charged, not yet paid"
    )
    overpaid_minor: Mapped[int] = mapped_column(
        BigInteger, default=0, server_default="0", doc="excess of the closing repayment, refunded"
    )
    entered_by_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id"))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    workflow_id: Mapped[str] = mapped_column(String(200))
    last_event_seq: Mapped[int] = mapped_column(
        Integer, default=0, doc="highest trail step applied; an older retry never overwrites"
    )
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class LoanGuarantor(Base):
    __tablename__ = "loan_guarantors"
    __table_args__ = (
        CheckConstraint(_in("status", GUARANTOR_STATUSES), name="status_known"),
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        UniqueConstraint("loan_id", "member_id", name="uq_loan_guarantors_loan_member"),
        Index("ix_loan_guarantors_member", "member_id"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    loan_id: Mapped[int] = mapped_column(ForeignKey("loans.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    amount_minor: Mapped[int] = mapped_column(BigInteger, doc="amount this member guarantees")
    status: Mapped[str] = mapped_column(String(12), default="pending", server_default="pending")
    responded_at: Mapped[datetime | None] = mapped_column()
    recorded_by: Mapped[str | None] = mapped_column(String(64), doc="staff user who recorded it")
    note: Mapped[str] = mapped_column(Text, default="", server_default="")


class LoanEvent(Base):
    """The trail: who did what to a loan, when and why; `to_state` set when the state changed."""

    __tablename__ = "loan_events"
    __table_args__ = (Index("ix_loan_events_loan", "loan_id", "seq"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(200), unique=True, doc="workflow id + step")
    loan_id: Mapped[int] = mapped_column(ForeignKey("loans.id"))
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(doc="when it happened (workflow time)")
    event: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(64), doc="staff username, or 'system'")
    actor_id: Mapped[int | None] = mapped_column(Integer)
    from_state: Mapped[str | None] = mapped_column(String(40))
    to_state: Mapped[str | None] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    recorded_at: Mapped[datetime] = mapped_column(server_default=func.now())
