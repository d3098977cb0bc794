"""KYC review: document metadata, the workflow's input, checks, decisions and state."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.types import CountryCode, Day, DocumentNumber, Name, Note, Reason

DocType = Literal["national_id", "passport", "drivers_licence", "proof_of_address", "photo", "bvn"]
IDENTITY_DOCS = frozenset({"national_id", "passport", "drivers_licence", "bvn"})
# Documents whose number and issuing country identify a person (format and duplicate checks).
NUMBERED_DOCS = IDENTITY_DOCS
MUST_EXPIRE = frozenset({"passport", "drivers_licence"})
Risk = Literal["low", "medium", "high"]
RejectReason = Literal[
    "forged_document",
    "identity_mismatch",
    "watchlist_match",
    "duplicate_identity",
    "underage",
    "other",
]

REVIEWER_ROLE = "kyc_reviewer"
COMPLIANCE_ROLE = "compliance_officer"
DECIDER_ROLES = frozenset({REVIEWER_ROLE, COMPLIANCE_ROLE})
# Who hands in documents and submits a case on a member's behalf.
SUBMITTER_ROLES = ("teller", "branch_manager", "kyc_reviewer")
VERIFIED_TIER = 1


class Stage(StrEnum):
    CHECKING = "checking"
    AWAITING_REVIEW = "awaiting_review"
    AWAITING_COMPLIANCE = "awaiting_compliance"
    AWAITING_MEMBER = "awaiting_member"
    ACTIVATING = "activating"
    CLOSING = "closing"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


TERMINAL_STAGES = frozenset({Stage.APPROVED, Stage.REJECTED, Stage.EXPIRED})
DECISION_STAGES = {Stage.AWAITING_REVIEW: REVIEWER_ROLE, Stage.AWAITING_COMPLIANCE: COMPLIANCE_ROLE}
# Stages in which the case waits for someone: the API answers once the workflow is in one.
SETTLED_STAGES = TERMINAL_STAGES | {*DECISION_STAGES, Stage.AWAITING_MEMBER}


class DocumentMeta(BaseModel):
    """The form fields sent with a document file."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    doc_type: DocType
    number: DocumentNumber | None = None
    issuing_country: CountryCode | None = None
    issue_date: Day | None = None
    expiry_date: Day | None = None

    @model_validator(mode="after")
    def _consistent(self) -> DocumentMeta:
        if self.doc_type in NUMBERED_DOCS and not (self.number and self.issuing_country):
            raise ValueError(f"a {self.doc_type} needs its number and issuing_country")
        if self.number is not None:
            self.number = "".join(self.number.split()).replace("-", "").upper()
            if not self.number.isalnum():
                raise ValueError("number may contain only letters, digits, spaces and dashes")
        if self.issue_date and self.issue_date > date.today():
            raise ValueError("issue_date is in the future")
        if self.issue_date and self.expiry_date and self.expiry_date <= self.issue_date:
            raise ValueError("expiry_date must be after issue_date")
        return self


class DocumentView(BaseModel):
    id: int
    member_number: str
    doc_type: DocType
    number: str | None
    issuing_country: str | None
    issue_date: date | None
    expiry_date: date | None
    content_type: str
    size_bytes: int
    sha256: str
    uploaded_by: str
    uploaded_at: datetime


class KycPolicy(BaseModel):
    """The institution's settings when the case opened, fixed in the workflow's history."""

    required_documents: list[list[DocType]]
    low_risk_routing: Literal["auto", "reviewer"]
    reminder_after: timedelta
    escalate_after: timedelta
    supervisor_role: str
    member_response_timeout: timedelta
    watchlist_hit_score: float
    watchlist_similar_score: float
    account_currency: str


class KycInput(BaseModel):
    case_number: str
    member_id: int
    member_number: str
    branch: str
    submitted_by_id: int
    submitted_by: str
    policy: KycPolicy


class OpenCaseRequest(BaseModel):
    case_number: str
    member_id: int
    submitted_by: str


class CheckRequest(BaseModel):
    case_number: str
    member_id: int
    today: date = Field(description="the workflow's date, so a replay sees the same checks")
    policy: KycPolicy


class CheckResult(BaseModel):
    name: str
    passed: bool
    reason: str


class CheckReport(BaseModel):
    checks: list[CheckResult]
    risk: Risk
    risk_reasons: list[str]
    watchlist_hit: bool
    underage: bool
    missing: list[str] = Field(description="what the member must hand in before a review")


class DecisionRequest(BaseModel):
    """A reviewer's or compliance officer's decision on a case."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    action: Literal["approve", "reject", "request_information"]
    reason_code: RejectReason | None = None
    note: Note = ""
    documents: list[DocType] = Field(default_factory=list, max_length=6)

    @model_validator(mode="after")
    def _complete(self) -> DecisionRequest:
        if self.action == "reject" and self.reason_code is None:
            raise ValueError("a rejection needs a reason_code")
        if self.action == "request_information" and not self.documents:
            raise ValueError("request_information needs the documents to ask for")
        return self


class DecisionInput(DecisionRequest):
    decided_by_id: int
    decided_by: str
    decided_by_roles: list[str]


class Resubmission(BaseModel):
    """The member handed in new documents (uploaded first); the checks run again."""

    model_config = ConfigDict(extra="forbid")
    by: Name
    note: Reason = ""


class Decision(BaseModel):
    at: datetime
    stage: Stage
    action: str
    by: str
    reason_code: str | None = None
    note: str = ""
    documents: list[str] = Field(default_factory=list)


class HistoryEntry(BaseModel):
    at: datetime
    stage: Stage
    note: str = ""


class CompleteRequest(BaseModel):
    case_number: str
    member_id: int
    outcome: Literal["approved", "rejected", "expired"]
    reason: str
    account_currency: str


class CompleteResult(BaseModel):
    kyc_status: str
    kyc_tier: int
    account_number: str | None = None


class Contact(BaseModel):
    """The result of KycReview's contact lookup in runs from before recipient ids (see
    workflows/recipients.py); kept so their histories replay. Nothing new returns one."""

    email: str
    name: str


class KycState(BaseModel):
    """What the Query and the API return. No names, e-mails or ID numbers: those stay in Postgres."""

    case_number: str
    member_number: str
    stage: Stage
    round: int = 0
    risk: Risk | None = None
    risk_reasons: list[str] = Field(default_factory=list)
    checks: list[CheckResult] = Field(default_factory=list)
    pending_role: str | None = None
    pending_decision: str | None = None
    requested_documents: list[str] = Field(default_factory=list)
    submitted_by: str
    decisions: list[Decision] = Field(default_factory=list)
    outcome_reason: str | None = None
    account_number: str | None = None
    history: list[HistoryEntry] = Field(default_factory=list)


class KycCaseSummary(BaseModel):
    """One line of the reviewers' inbox, read from Temporal's visibility store."""

    case_number: str
    workflow_id: str
    stage: str | None
    risk: str | None
    assigned_role: str | None
    branch: str | None
    started_at: datetime | None


class WatchlistRow(BaseModel):
    full_name: str = Field(min_length=1, max_length=300)
    date_of_birth: date | None = None
    source: str = Field(default="", max_length=100)
    reference: str = Field(default="", max_length=100)
