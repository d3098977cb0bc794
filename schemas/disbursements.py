"""The Disbursement saga: API bodies, workflow input and state, activity payloads, read model."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.loans import Actor
from schemas.types import Day, LongName

# Who may release a loan's money: not the loan officer who booked it (segregation of duties),
# but the branch manager or finance. LoanApproval's `disburse` validator checks the same list.
DISBURSER_ROLES = ("branch_manager", "finance")
PROCESS = "Disbursement"
Destination = Literal["savings", "external"]


def disbursement_workflow_id(loan_number: str, attempt: int) -> str:
    """One workflow per attempt: a compensated attempt lets staff try again as the next one."""
    return f"disbursement-{loan_number}-{attempt}"


def disbursement_attempt(workflow_id: str) -> int:
    """The attempt number a disbursement workflow id carries (its last part)."""
    return int(workflow_id.rsplit("-", 1)[1])


class ExternalAccount(BaseModel):
    """A bank account at another institution, paid through the payment rail."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)
    bank_code: str = Field(pattern=r"^[A-Z0-9]{3,11}$", description="bank or BIC code")
    account_number: str = Field(pattern=r"^[A-Z0-9-]{4,34}$")
    account_name: LongName = Field(max_length=140)


class DisbursementCreate(BaseModel):
    """`savings`: the member's savings account is credited. `external`: the money leaves through
    the payment rail to `external_account`."""

    model_config = ConfigDict(extra="forbid")
    destination: Destination = "savings"
    external_account: ExternalAccount | None = None
    disbursed_on: Day | None = Field(
        default=None, description="business date; decides the due dates (default today, UTC)"
    )

    @model_validator(mode="after")
    def _account_matches_destination(self) -> DisbursementCreate:
        if (self.destination == "external") != (self.external_account is not None):
            raise ValueError("external_account is required for, and only for, destination external")
        return self


class DisbursementInput(BaseModel):
    """What one attempt disburses. Payout timings come from the starter's settings (a workflow
    reads no settings); defaults are for the savings destination, which never pays out."""

    loan_number: str
    attempt: int = Field(ge=1)
    destination: Destination = "savings"
    external_account: ExternalAccount | None = None
    disbursed_on: Day
    requested_by: str
    requested_by_id: int | None = None
    branch: str = ""
    product: str = ""
    currency: str
    amount_minor: int = Field(gt=0, description="the approved principal (search attribute)")
    payout_timeout: timedelta = timedelta(minutes=10)
    payout_attempt_timeout: timedelta = timedelta(seconds=30)


class DisburseRequest(BaseModel):
    """LoanApproval's `disburse` Update: start this disbursement as the approval's child."""

    actor: Actor
    disbursement: DisbursementInput


class Stage(StrEnum):
    CLAIMING = "claiming"
    OPENING_ACCOUNT = "opening_account"
    POSTING = "posting"
    PLACING_LIENS = "placing_liens"
    PAYING_OUT = "paying_out"
    ACTIVATING = "activating"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    COMPENSATED = "compensated"
    REFUSED = "refused"


Status = Literal["in_progress", "completed", "compensated", "refused"]


class DisbursementState(BaseModel):
    """The `state` Query and the workflow's result."""

    workflow_id: str
    loan_number: str
    attempt: int
    stage: Stage = Stage.CLAIMING
    status: Status = "in_progress"
    destination: Destination
    journal_id: str | None = None
    payout_reference: str | None = None
    failure_reason: str = ""
    compensated_steps: list[str] = Field(default_factory=list)


class ClaimRequest(BaseModel):
    workflow_id: str
    inp: DisbursementInput


class Lien(BaseModel):
    member_number: str
    account_id: int
    amount_minor: int


class DisbursementPlan(BaseModel):
    """What claim_disbursement found: the amounts and accounts the later steps use."""

    loan_id: int
    member_id: int
    currency: str
    scale: int
    amount_minor: int
    fee_minor: int
    savings_account_id: int | None
    liens: list[Lien]


class Step(BaseModel):
    """Every later step finds its disbursement row by the workflow id (its idempotency key)."""

    workflow_id: str
    loan_number: str
    reason: str = ""


class PayoutRequest(BaseModel):
    idempotency_key: str
    amount_minor: int
    scale: int
    currency: str
    account: ExternalAccount
    reference: str


class PayoutResult(BaseModel):
    reference: str


class RecordPayout(BaseModel):
    step: Step
    reference: str


class Installment(BaseModel):
    number: int
    due_on: date
    total: str


class Activation(BaseModel):
    """What the member's `loan_disbursed` e-mail says."""

    member_id: int
    principal: str
    fee: str
    net: str
    disbursed_on: date
    installments: list[Installment]


class DisbursementView(BaseModel):
    workflow_id: str
    attempt: int
    status: str
    destination: Destination
    external_account: ExternalAccount | None
    amount: str
    fee: str
    currency: str
    disbursed_on: date
    journal_id: str | None
    payout_journal_id: str | None
    compensation_journal_id: str | None
    reversal_journal_id: str | None = Field(
        description="the journal that undid the disbursement journal: its compensation, or the "
        "reversal that took the loan back to approved"
    )
    payout_reference: str | None
    failure_reason: str
    requested_by: str
    created_at: datetime


class DisbursementAccepted(BaseModel):
    loan_number: str
    workflow_id: str
    attempt: int
    status: Status = "in_progress"
    via: Literal["loan_approval", "direct"] = Field(
        description="started as LoanApproval's child (it was still running) or directly"
    )
