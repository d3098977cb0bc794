"""Postgres schema (SQLAlchemy 2.0). Alembic migrations under migrations/ create it.

Money columns are BIGINT minor units (`*_minor`); the currency's scale is in `currencies`.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, INET, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from activities.tables.base import Base, _in

GL_TYPES = ("asset", "liability", "equity", "income", "expense")
ACCOUNT_KINDS = ("gl", "savings", "shares", "loan")


class Branch(Base):
    __tablename__ = "branches"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Member(Base):
    __tablename__ = "members"
    __table_args__ = (
        CheckConstraint(_in("status", ("active", "dormant", "closed")), name="status_known"),
        CheckConstraint(
            _in("kyc_status", ("unverified", "pending", "verified", "rejected")),
            name="kyc_status_known",
        ),
        Index("ix_members_last_first", "last_name", "first_name"),
        UniqueConstraint("created_by_id", "idempotency_key", name="uq_members_created_by_key"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    member_number: Mapped[str] = mapped_column(String(20), unique=True)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(32))
    date_of_birth: Mapped[date] = mapped_column(Date)
    branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id"))
    status: Mapped[str] = mapped_column(String(16), default="active", server_default="active")
    kyc_status: Mapped[str] = mapped_column(
        String(16), default="unverified", server_default="unverified"
    )
    kyc_tier: Mapped[int] = mapped_column(
        SmallInteger, default=0, server_default="0", doc="0 = basic tier"
    )
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    idempotency_key: Mapped[str | None] = mapped_column(
        String(200), doc="the creator's Idempotency-Key: a re-run of the request finds this row"
    )
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Currency(Base):
    __tablename__ = "currencies"
    __table_args__ = (CheckConstraint("scale BETWEEN 0 AND 9", name="scale_range"),)
    code: Mapped[str] = mapped_column(String(3), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    scale: Mapped[int] = mapped_column(SmallInteger, doc="decimal places of the minor unit")


class LedgerAccount(Base):
    """A member account (savings, shares, loan) or a GL account of the chart of accounts.

    The four balance columns are caches of the sums of postings and pending holds; the ledger
    engine changes them only in the transaction that writes those rows, and `ledger verify`
    proves they agree.
    """

    __tablename__ = "ledger_accounts"
    __table_args__ = (
        CheckConstraint(_in("kind", ACCOUNT_KINDS), name="kind_known"),
        CheckConstraint(_in("gl_type", GL_TYPES), name="gl_type_known"),
        CheckConstraint(_in("status", ("open", "closed")), name="status_known"),
        CheckConstraint("(kind = 'gl') = (member_id IS NULL)", name="member_iff_not_gl"),
        CheckConstraint(
            "debits_posted_minor >= 0 AND credits_posted_minor >= 0 "
            "AND debits_pending_minor >= 0 AND credits_pending_minor >= 0",
            name="balances_nonnegative",
        ),
        CheckConstraint(
            "NOT debits_must_not_exceed_credits "
            "OR debits_posted_minor + debits_pending_minor <= credits_posted_minor",
            name="no_overdraft",
        ),
        CheckConstraint(
            "NOT credits_must_not_exceed_debits "
            "OR credits_posted_minor + credits_pending_minor <= debits_posted_minor",
            name="no_overcredit",
        ),
        Index("ix_ledger_accounts_member", "member_id"),
        UniqueConstraint(
            "opened_by_id", "idempotency_key", name="uq_ledger_accounts_opened_by_key"
        ),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    gl_type: Mapped[str] = mapped_column(String(16), doc="normal side: asset/expense are debit")
    currency: Mapped[str] = mapped_column(ForeignKey("currencies.code"))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    branch_id: Mapped[int | None] = mapped_column(ForeignKey("branches.id"))
    control_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("ledger_accounts.id"), doc="GL account a member account rolls up into"
    )
    status: Mapped[str] = mapped_column(String(16), default="open", server_default="open")
    debits_must_not_exceed_credits: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )
    credits_must_not_exceed_debits: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )
    debits_posted_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    credits_posted_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    debits_pending_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    credits_pending_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    opened_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    idempotency_key: Mapped[str | None] = mapped_column(
        String(200), doc="the opener's Idempotency-Key: a re-run of the request finds this row"
    )
    opened_at: Mapped[datetime] = mapped_column(server_default=func.now())
    closed_at: Mapped[datetime | None] = mapped_column()


class Journal(Base):
    """A business event: one or more postings committed atomically. Immutable once written."""

    __tablename__ = "journals"
    __table_args__ = (
        # The daily loan job's totals of a date read its batch journals (one per batch).
        Index(
            "ix_journals_loan_servicing_date",
            "value_date",
            postgresql_where=text("kind = 'loan_servicing'"),
        ),
    )
    id: Mapped[str] = mapped_column(String(200), primary_key=True, doc="caller-chosen id")
    kind: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    value_date: Mapped[date] = mapped_column(Date)
    content_hash: Mapped[str] = mapped_column(
        String(64), doc="sha256 of the canonical content; a retry must match it"
    )
    reverses_journal_id: Mapped[str | None] = mapped_column(
        ForeignKey("journals.id"), unique=True, doc="unique: an original is reversed once"
    )
    process_id: Mapped[str | None] = mapped_column(String(200), doc="workflow id that posted it")
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, default=dict, server_default=text("'{}'::jsonb")
    )
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Posting(Base):
    """One movement of `amount_minor` from a debit account to a credit account."""

    __tablename__ = "postings"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("debit_account_id <> credit_account_id", name="distinct_accounts"),
        UniqueConstraint("journal_id", "line", name="uq_postings_journal_line"),
        Index("ix_postings_debit_account", "debit_account_id", "id"),
        Index("ix_postings_credit_account", "credit_account_id", "id"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    journal_id: Mapped[str] = mapped_column(ForeignKey("journals.id"))
    line: Mapped[int] = mapped_column(SmallInteger)
    debit_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    credit_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(ForeignKey("currencies.code"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Hold(Base):
    """A pending posting that reserves funds; later posted (into a journal) or voided, once."""

    __tablename__ = "holds"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("debit_account_id <> credit_account_id", name="distinct_accounts"),
        CheckConstraint(_in("status", ("pending", "posted", "voided")), name="status_known"),
        CheckConstraint(
            "(status = 'posted') = (journal_id IS NOT NULL)", name="posted_has_journal"
        ),
        Index("ix_holds_pending", "status", postgresql_where="status = 'pending'"),
    )
    id: Mapped[str] = mapped_column(String(200), primary_key=True, doc="caller-chosen id")
    debit_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    credit_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(ForeignKey("currencies.code"))
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    content_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    journal_id: Mapped[str | None] = mapped_column(ForeignKey("journals.id"), unique=True)
    void_reason: Mapped[str | None] = mapped_column(Text)
    process_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    resolved_at: Mapped[datetime | None] = mapped_column()


class IdempotencyRecord(Base):
    """The first answer to a POST carrying an Idempotency-Key, replayed for an identical repeat.

    A key is scoped per (user, method, route template). While the first request runs, the row is
    its claim: `owner` renews `lease_expires_at`, and a retry finding the lease lapsed (the owner
    died, or could not store its answer) takes the claim over.
    """

    __tablename__ = "idempotency_records"
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id"), primary_key=True)
    method: Mapped[str] = mapped_column(String(10), primary_key=True)
    route: Mapped[str] = mapped_column(
        String(200), primary_key=True, doc="route template, e.g. /v1/members/{member_number}"
    )
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64), doc="sha256 of method, path and body")
    status_code: Mapped[int | None] = mapped_column(Integer, doc="NULL while in progress")
    response_body: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    owner: Mapped[uuid.UUID | None] = mapped_column(Uuid, doc="the claim of the running request")
    lease_expires_at: Mapped[datetime] = mapped_column(
        server_default=func.now(), doc="database time; an unanswered claim past it is taken over"
    )
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class AuditEntry(Base):
    """Append-only record of every command and of every read of personal data: who, what,
    when, from where, which members it showed, and the outcome."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_member_numbers", "member_numbers", postgresql_using="gin"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    entry_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, unique=True, doc="chosen by the API: a spooled or retried entry is written once"
    )
    at: Mapped[datetime] = mapped_column(server_default=func.now())
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    actor_username: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(100), doc="HTTP method and route template")
    resource: Mapped[str] = mapped_column(Text, doc="the concrete path (and query, for reads)")
    client_address: Mapped[str | None] = mapped_column(INET)
    user_agent: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    member_numbers: Mapped[list[str] | None] = mapped_column(
        ARRAY(String(20)), doc="members whose personal data the answer showed"
    )
    outcome_status: Mapped[int] = mapped_column(Integer, doc="HTTP status returned")
    outcome: Mapped[str] = mapped_column(String(64), doc="'ok' or the error code")
