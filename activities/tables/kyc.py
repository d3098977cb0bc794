"""KYC tables: uploaded documents, review cases, and the screening watch list."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from activities.tables.base import Base, _in

DOC_TYPES = ("national_id", "passport", "drivers_licence", "proof_of_address", "photo", "bvn")
CASE_STATUSES = ("open", "approved", "rejected", "expired")


class KycDocument(Base):
    """A document a member handed in. The file itself is kept here, with its sha256 and size."""

    __tablename__ = "kyc_documents"
    __table_args__ = (
        CheckConstraint(_in("doc_type", DOC_TYPES), name="doc_type_known"),
        CheckConstraint("size_bytes > 0", name="size_positive"),
        UniqueConstraint("member_id", "sha256", name="uq_kyc_documents_member_file"),
        Index("ix_kyc_documents_member", "member_id", "doc_type"),
        Index("ix_kyc_documents_number", "doc_type", "number"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    doc_type: Mapped[str] = mapped_column(String(32))
    number: Mapped[str | None] = mapped_column(
        String(64), doc="document number, upper-cased, without spaces or dashes"
    )
    issuing_country: Mapped[str | None] = mapped_column(String(2), doc="ISO 3166-1 alpha-2")
    issue_date: Mapped[date | None] = mapped_column(Date)
    expiry_date: Mapped[date | None] = mapped_column(Date)
    content_type: Mapped[str] = mapped_column(String(64), doc="detected from the magic bytes")
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    uploaded_by: Mapped[str] = mapped_column(String(64), doc="staff username")
    uploaded_at: Mapped[datetime] = mapped_column(server_default=func.now())


class KycCase(Base):
    """One KYC review: a KycReview workflow run. At most one open case per member."""

    __tablename__ = "kyc_cases"
    __table_args__ = (
        CheckConstraint(_in("status", CASE_STATUSES), name="status_known"),
        CheckConstraint(_in("risk", ("low", "medium", "high")), name="risk_known"),
        Index(
            "uq_kyc_cases_one_open_per_member",
            "member_id",
            unique=True,
            postgresql_where="status = 'open'",
        ),
    )
    case_number: Mapped[str] = mapped_column(String(40), primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    workflow_id: Mapped[str] = mapped_column(String(200))
    run_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="open", server_default="open")
    risk: Mapped[str | None] = mapped_column(String(8))
    submitted_by: Mapped[str] = mapped_column(String(64), doc="staff username")
    outcome_reason: Mapped[str | None] = mapped_column(Text)
    opened_at: Mapped[datetime] = mapped_column(server_default=func.now())
    closed_at: Mapped[datetime | None] = mapped_column()


class WatchlistEntry(Base):
    """A sanctioned or politically exposed person, from `bankflow watchlist import`."""

    __tablename__ = "watchlist_entries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    full_name: Mapped[str] = mapped_column(String(300))
    date_of_birth: Mapped[date | None] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(100), default="", server_default="")
    reference: Mapped[str] = mapped_column(String(100), default="", server_default="")
    imported_at: Mapped[datetime] = mapped_column(server_default=func.now())
