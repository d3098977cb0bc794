"""Reversals and period close: API bodies, workflow input and state, decisions, approval tiers."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.types import Reason

ReasonCode = Literal[
    "duplicate", "wrong_account", "wrong_amount", "customer_dispute", "fraud", "other"
]
# Journal kinds reversed by mirroring every posting. Loan kinds need loan re-allocation or an
# undone disbursement (the disbursement issue): refused until that step exists.
MIRROR_KINDS = frozenset(
    {"deposit", "withdrawal", "transfer", "fee", "interest", "interest_posting"}
)
# Loan journals: mirrored, and the loan book adjusted in the same transaction.
LOAN_KINDS = frozenset({"loan_repayment", "loan_disbursement"})
# Who may ask for a reversal (the API checks it; deciding is the workflow's business).
REQUESTER_ROLES = ("teller", "branch_manager", "finance")


class ReversalTier(BaseModel):
    """Up to `up_to` (major units, inclusive; None = no limit): `approvers` distinct people,
    each holding one of `roles`, none of them the requester."""

    model_config = ConfigDict(frozen=True)
    up_to: Decimal | None
    roles: list[str] = Field(min_length=1)
    approvers: int = Field(default=1, ge=1, le=5)


DEFAULT_TIERS: tuple[ReversalTier, ...] = (
    ReversalTier(up_to=Decimal("1000"), roles=["branch_manager", "finance"], approvers=1),
    ReversalTier(up_to=Decimal("10000"), roles=["branch_manager", "finance"], approvers=2),
    ReversalTier(up_to=None, roles=["finance"], approvers=2),
)


def tier_for(tiers: list[ReversalTier], amount: Decimal) -> ReversalTier:
    """The first tier, by ascending limit, whose limit covers the amount; the last one else."""
    ordered = sorted(tiers, key=lambda t: (t.up_to is None, t.up_to or Decimal(0)))
    for tier in ordered:
        if tier.up_to is None or amount <= tier.up_to:
            return tier
    return ordered[-1]


class Stage(StrEnum):
    VALIDATING = "validating"
    AWAITING_APPROVAL = "awaiting_approval"
    REVERSING = "reversing"
    RELEASING_HOLD = "releasing_hold"
    NOTIFYING = "notifying"
    COMPLETED = "completed"
    REFUSED = "refused"
    DECLINED = "declined"
    REJECTED = "rejected"
    EXPIRED = "expired"


TERMINAL_STAGES = frozenset(
    {Stage.COMPLETED, Stage.REFUSED, Stage.DECLINED, Stage.REJECTED, Stage.EXPIRED}
)


class ReversalCreate(BaseModel):
    """Why the journal must be reversed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason_code: ReasonCode
    reason: Reason = Field(min_length=1, description="free text for the checker")


class ReversalInput(BaseModel):
    """Everything the workflow needs, fixed in history. Tiers, override roles and timeout are
    the settings at request time, so a settings change never alters a running case."""

    journal_id: str
    request_id: str = Field(description="derived from requester and Idempotency-Key")
    reason_code: ReasonCode
    reason: Reason
    requested_by_id: int
    requested_by: str
    tiers: list[ReversalTier] = Field(min_length=1)
    override_roles: list[str] = Field(min_length=1)
    approval_timeout: timedelta


class Check(BaseModel):
    """One validation rule and what it found: the recorded reason of a refusal or a pass."""

    name: str
    ok: bool
    detail: str = ""


class HeldLine(BaseModel):
    hold_id: str
    account: str
    amount_minor: int


class Shortfall(BaseModel):
    """What the reversal would take from a no-overdraft account beyond its available funds."""

    account_id: int
    account: str
    amount_minor: int


class PrepareRequest(BaseModel):
    reversal_id: str
    request_id: str
    journal_id: str


class ReversalPlan(BaseModel):
    """The checks, and when they pass, the holds placed and the overdraft they could not cover."""

    journal_id: str
    kind: str
    value_date: date
    currency: str
    scale: int
    amount_minor: int = Field(description="sum of the journal's postings in its currency")
    branch: str
    checks: list[Check]
    error: str | None = None
    error_detail: str | None = None
    holds: list[HeldLine] = Field(default_factory=list)
    shortfalls: list[Shortfall] = Field(default_factory=list)


class ExecuteRequest(BaseModel):
    reversal_id: str
    journal_id: str
    hold_ids: list[str]
    value_date: date
    description: str
    override: bool = Field(description="an approved overdraft override: cover any shortfall")


class ExecuteResult(BaseModel):
    reversal_journal_id: str
    cover_journal_id: str | None = None
    covered: list[Shortfall] = Field(default_factory=list)


class ReleaseRequest(BaseModel):
    hold_ids: list[str]
    reason: str


class EventRecord(BaseModel):
    reversal_id: str
    request_id: str
    journal_id: str
    event: str
    key: str = Field(description="unique per case step, so a retried write lands once")
    actor: str | None = None
    detail: str = ""


class NoticeRequest(BaseModel):
    reversal_id: str
    journal_id: str
    reversal_journal_id: str
    reason_code: str


class DecisionRequest(BaseModel):
    """An approver's decision on a reversal awaiting approval."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    approve: bool
    reason: Reason = ""
    override_overdraft: bool = Field(
        default=False, description="approve a reversal that overdraws an account (higher role)"
    )


class DecisionInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    approve: bool
    reason: Reason = ""
    override_overdraft: bool = False
    approver_id: int
    approver: str
    approver_roles: list[str]


class Decision(BaseModel):
    approver_id: int
    approver: str
    approve: bool
    override_overdraft: bool
    reason: str
    at: datetime


class HistoryEntry(BaseModel):
    at: datetime
    stage: Stage
    note: str = ""


class ReversalState(BaseModel):
    reversal_id: str
    journal_id: str
    request_id: str
    stage: Stage
    reason_code: str
    reason: str
    requested_by: str
    kind: str | None = None
    amount_minor: int | None = None
    currency: str | None = None
    scale: int | None = None
    checks: list[Check] = Field(default_factory=list)
    tier: ReversalTier | None = None
    needs_override: bool = False
    assigned_role: str | None = None
    decisions: list[Decision] = Field(default_factory=list)
    holds: list[HeldLine] = Field(default_factory=list)
    shortfalls: list[Shortfall] = Field(default_factory=list)
    reversal_journal_id: str | None = None
    cover_journal_id: str | None = None
    notified: int = 0
    notification_error: str | None = None
    error: str | None = None
    error_detail: str | None = None
    expires_at: datetime | None = None
    history: list[HistoryEntry] = Field(default_factory=list)


class ReversalView(BaseModel):
    """What the API returns: the case with amounts as major-unit strings."""

    reversal_id: str
    journal_id: str
    stage: Stage
    kind: str | None
    amount: str | None
    currency: str | None
    reason_code: str
    reason: str
    requested_by: str
    checks: list[Check]
    approvers_needed: int | None
    approver_roles: list[str]
    needs_override: bool
    assigned_role: str | None
    decisions: list[Decision]
    held: list[HeldLine]
    shortfalls: list[Shortfall]
    reversal_journal_id: str | None
    cover_journal_id: str | None
    notified: int
    error: str | None
    error_detail: str | None
    expires_at: datetime | None
    history: list[HistoryEntry]


class ReversalSummary(BaseModel):
    """One line of the reversal inbox, read from Temporal's visibility store."""

    journal_id: str
    workflow_id: str
    status: str
    stage: str | None
    assigned_role: str | None
    amount_minor: int | None
    currency: str | None
    started_at: datetime | None


class PeriodView(BaseModel):
    period: str = Field(description="yyyy-mm")
    status: Literal["open", "closed"]
    closed_at: datetime | None = None
    closed_by: str | None = None
