"""Loan applications and the LoanApproval workflow: API bodies, workflow input, decisions, state,
trail, and the read model."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.loan_products import ProductSnapshot
from schemas.repayments import StatementInstallment
from schemas.types import Amount, Day, MemberNumber, ProductCode, Reason

# Staff who enter, amend and withdraw applications and record guarantors' answers.
REQUESTER_ROLES = ("loan_officer", "teller", "branch_manager")
SYSTEM = "system"
# The eligibility rule of the basic KYC tier's principal limit (schemas/kyc_tier.py).
BASIC_TIER_RULE = "kyc_tier_limit"


class LoanState(StrEnum):
    """Fineract's names for a loan's states."""

    SUBMITTED = "submitted_and_pending_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    ACTIVE = "active"
    CLOSED = "closed_obligations_met"
    OVERPAID = "overpaid"


class Stage(StrEnum):
    CHECKING_ELIGIBILITY = "checking_eligibility"
    AWAITING_GUARANTORS = "awaiting_guarantors"
    AWAITING_APPROVAL = "awaiting_approval"
    RETURNED_FOR_CHANGES = "returned_for_changes"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


TERMINAL_STAGES = frozenset({Stage.REJECTED, Stage.WITHDRAWN})
# Where the application POST stops waiting: the first point a person must act, or the end.
SETTLED_STAGES = frozenset(Stage) - {Stage.CHECKING_ELIGIBILITY}


# --- API bodies -------------------------------------------------------------------------------


class GuarantorIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    member_number: MemberNumber
    amount: Amount = Field(description="amount guaranteed, major units")


class LoanCreate(BaseModel):
    """A member's application, entered by a loan officer or teller."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    member_number: MemberNumber
    product: ProductCode = Field(description="loan product code")
    principal: Amount = Field(description="major units")
    repayments: int = Field(ge=1, le=600)
    purpose: Reason = ""
    guarantors: list[GuarantorIn] = Field(default_factory=list, max_length=10)
    expected_disbursement_on: Day | None = Field(default=None, description="default today")

    @model_validator(mode="after")
    def _distinct_guarantors(self) -> LoanCreate:
        numbers = [g.member_number for g in self.guarantors]
        if len(set(numbers)) != len(numbers):
            raise ValueError("a guarantor is named twice")
        if self.member_number in numbers:
            raise ValueError("the applicant cannot guarantee their own loan")
        return self


DecisionAction = Literal["approve", "reject", "return"]


class DecisionRequest(BaseModel):
    """approve (optionally with a lower principal or another number of repayments), reject, or
    return for changes; a reason is required to reject or return."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    action: DecisionAction
    reason: Reason = ""
    principal: Amount | None = None
    repayments: int | None = Field(default=None, ge=1, le=600)

    @model_validator(mode="after")
    def _consistent(self) -> DecisionRequest:
        if self.action != "approve" and (self.principal or self.repayments):
            raise ValueError("only an approval can change the principal or repayments")
        if self.action != "approve" and not self.reason:
            raise ValueError(f"a reason is required to {self.action}")
        return self


class AmendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    principal: Amount | None = None
    repayments: int | None = Field(default=None, ge=1, le=600)
    purpose: Reason | None = None
    reason: Reason = ""


class WithdrawRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: Reason = Field(min_length=1)


class ConsentRequest(BaseModel):
    """A guarantor's answer, recorded by staff who saw the guarantor."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    accept: bool
    note: Reason = ""


# --- workflow input, updates and signals ------------------------------------------------------


class Guarantor(BaseModel):
    member_id: int
    member_number: str
    amount_minor: int = Field(gt=0)


class LoanInput(BaseModel):
    """Everything the workflow needs, resolved by the API, fixed in history."""

    loan_id: int
    loan_number: str
    member_id: int
    member_number: str
    branch: str
    product: ProductSnapshot
    principal_minor: int = Field(gt=0)
    repayments: int = Field(gt=0)
    purpose: Reason = ""
    expected_disbursement_on: Day
    guarantors: list[Guarantor] = Field(default_factory=list)
    entered_by_id: int
    entered_by: str
    guarantor_timeout: timedelta
    reminder_after: timedelta
    escalate_after: timedelta
    return_timeout: timedelta
    approval_validity: timedelta


class Actor(BaseModel):
    """Who acts, as the API authenticated them. `member_ids`: members this staff user is (same
    e-mail address), so the workflow can refuse an applicant or guarantor deciding."""

    model_config = ConfigDict(extra="forbid")
    user_id: int
    username: str
    roles: list[str]
    member_ids: list[int] = Field(default_factory=list)


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: DecisionAction
    reason: Reason = ""
    principal_minor: int | None = Field(default=None, gt=0)
    repayments: int | None = Field(default=None, gt=0)
    actor: Actor


class Amendment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    principal_minor: int | None = Field(default=None, gt=0)
    repayments: int | None = Field(default=None, gt=0)
    purpose: Reason | None = None
    reason: Reason = ""
    actor: Actor


class Withdrawal(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Reason
    actor: Actor


class GuarantorAnswer(BaseModel):
    """A guarantor accepted or declined, as a staff user recorded it (the `guarantor_consent`
    Update; runs started before it took the same answer as a Signal)."""

    member_number: MemberNumber
    accept: bool
    note: Reason = ""
    recorded_by_id: int
    recorded_by: str
    recorded_by_roles: list[str] = Field(default_factory=list)
    recorded_by_member_ids: list[int] = Field(
        default_factory=list, description="members this staff user is (same e-mail address)"
    )


# --- activities ------------------------------------------------------------------------------


class EligibilityCheck(BaseModel):
    rule: str
    passed: bool
    detail: str


class TermsCheckRequest(BaseModel):
    """Check an application's terms against its product's eligibility and guarantee rules.
    `guarantor_cover`: also check each guarantor's free savings covers their guarantee."""

    loan_id: int
    member_id: int
    product: ProductSnapshot
    principal_minor: int
    guarantors: list[Guarantor]
    guarantor_cover: bool = False


class TermsCheckResult(BaseModel):
    checks: list[EligibilityCheck]

    @property
    def reasons(self) -> list[str]:
        return [c.detail for c in self.checks if not c.passed]

    @property
    def over_basic_tier(self) -> bool:
        return any(c.rule == BASIC_TIER_RULE and not c.passed for c in self.checks)

    @property
    def eligible(self) -> bool:
        return all(c.passed for c in self.checks)


class CoverRequest(BaseModel):
    loan_id: int
    member_id: int
    amount_minor: int
    currency: str


class CoverResult(BaseModel):
    free_minor: int
    covered: bool


class LoanEventRecord(BaseModel):
    """One step of the trail and the loan row's new stage (written once per `seq`)."""

    loan_id: int
    workflow_id: str
    seq: int
    at: datetime
    event: str
    actor: str
    actor_id: int | None = None
    from_state: LoanState | None = None
    to_state: LoanState | None = None
    reason: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    stage: Stage
    assigned_role: str | None = None
    current_details: str = ""
    principal_minor: int
    repayments: int
    purpose: str
    eligibility: list[EligibilityCheck] | None = None
    guarantor_member_id: int | None = None
    guarantor_status: Literal["pending", "accepted", "declined"] | None = None


class Recipient(BaseModel):
    """The result of the loan processes' contact lookup in runs from before recipient ids (see
    workflows/recipients.py); kept so their histories replay. Nothing new returns one."""

    email: str | None
    name: str


class StaffRecipientsRequest(BaseModel):
    roles: list[str]


# --- state and read model --------------------------------------------------------------------


class Vote(BaseModel):
    at: datetime
    round: int
    level: int
    role: str
    action: DecisionAction
    approver: str
    approver_id: int
    reason: str = ""
    principal_minor: int | None = None
    repayments: int | None = None


class LevelProgress(BaseModel):
    level: int
    role: str
    quorum: int
    allowed_roles: list[str]
    approvals: int = 0
    escalated: bool = False
    reminded: bool = False


class LoanApprovalState(BaseModel):
    """The workflow's own view (Query `state`), for operations and tests."""

    loan_number: str
    state: LoanState
    stage: Stage
    principal_minor: int
    repayments: int
    purpose: str
    assigned_role: str | None = None
    round: int = 0
    tier: int | None = None
    level: LevelProgress | None = None
    votes: list[Vote] = Field(default_factory=list)
    guarantors: dict[str, Literal["pending", "accepted", "declined"]] = Field(default_factory=dict)
    eligibility: list[EligibilityCheck] = Field(default_factory=list)
    reason: str = ""
    details: str = ""
    disbursement_workflow_id: str | None = Field(
        default=None, description="the Disbursement child this approval handed the loan to"
    )


class GuarantorView(BaseModel):
    member_number: str
    amount: str
    status: str
    responded_at: datetime | None
    recorded_by: str | None


class TrailEntry(BaseModel):
    at: datetime
    event: str
    actor: str
    from_state: str | None
    to_state: str | None
    reason: str
    data: dict[str, Any]


class LoanScheduleView(BaseModel):
    """A loan's current schedule. Until it is disbursed: the one its current terms propose, from
    the expected disbursement date. Once disbursed: the loan book's, due dates from
    `disbursed_on`, with penalties charged, interest waived and what is paid of each."""

    basis: Literal["proposed", "disbursed"]
    starts_on: date = Field(description="the (expected) disbursement date the schedule runs from")
    currency: str
    installments: list[StatementInstallment]
    total_principal: str
    total_interest: str = Field(description="interest charged, less what a payoff waived")
    total_due: str = Field(description="every installment's total")
    total_paid: str
    total_outstanding: str


class LoanView(BaseModel):
    loan_number: str
    workflow_id: str
    member_number: str
    product: str
    currency: str
    state: str
    stage: str
    assigned_role: str | None
    waiting_for: str = Field(description="what the application waits for, in plain words")
    requested_principal: str
    requested_repayments: int
    principal: str
    repayments: int
    purpose: str
    expected_disbursement_on: date
    disbursed_on: date | None
    closed_on: date | None
    overpaid: str = Field(description="cash received beyond the payoff, credited to savings")
    annual_interest_rate: str
    entered_by: str
    guarantors: list[GuarantorView]
    eligibility: list[EligibilityCheck]
    schedule: LoanScheduleView
    trail: list[TrailEntry]
    created_at: datetime
