"""Loan repayments, the payoff quote and the loan statement: payloads shared by the API, the
LoanRepayment workflow and its activities. Workflow payloads carry minor units; views carry
decimal strings in major units."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.types import Amount, Day

Source = Literal["savings", "cash"]
# Who may take a repayment (the payment side); readers are those of the loans API.
REPAYMENT_ROLES = ("teller", "loan_officer", "branch_manager")


class RepaymentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: Amount = Field(description='major units, e.g. "305.00"')
    source: Source = Field(
        default="savings",
        description="savings: taken from the member's savings account; cash: paid at a teller",
    )
    value_date: Day | None = Field(
        default=None,
        description="default today (UTC); not in the future, not before the disbursement or "
        "the loan's latest repayment",
    )


class RepaymentInput(BaseModel):
    """What the LoanRepayment workflow is started with."""

    loan_number: str
    loan_id: int
    member_id: int
    branch: str
    product: str
    currency: str
    scale: int
    amount_minor: int = Field(gt=0)
    source: Source
    value_date: date
    requested_by: str
    requested_by_id: int


class RepaymentRequest(BaseModel):
    """post_loan_repayment's input: one repayment, applied once under `workflow_id`."""

    workflow_id: str
    loan_number: str
    amount_minor: int = Field(gt=0)
    source: Source
    value_date: date
    at: datetime = Field(description="workflow time, for the loan's trail")
    actor: str
    actor_id: int | None = None


class InstallmentPortion(BaseModel):
    """What the repayment paid of one installment (minor units)."""

    number: int
    penalty_minor: int = 0
    fee_minor: int = 0
    interest_minor: int = 0
    principal_minor: int = 0


class RepaymentResult(BaseModel):
    """What post_loan_repayment did (also rebuilt from the stored row on a retry)."""

    journal_id: str
    loan_number: str
    member_id: int
    currency: str
    scale: int
    value_date: date
    requested_minor: int = Field(default=0, description="the amount asked for")
    amount_minor: int = Field(description="what the repayment took from its source")
    not_taken_minor: int = Field(
        default=0, description="from savings: the amount asked for beyond what the loan owed"
    )
    principal_minor: int
    interest_minor: int
    fee_minor: int
    penalty_minor: int
    overpayment_minor: int = Field(description="cash received beyond the payoff, to savings")
    portions: list[InstallmentPortion]
    waived: list[tuple[int, int]] = Field(description="(installment, interest waived)")
    refunded: list[tuple[int, int]] = Field(
        default_factory=list, description="(installment, interest paid in advance given back)"
    )
    state: str = Field(description="the loan's state after the repayment")
    closed: bool
    voided_holds: list[str] = Field(default_factory=list)
    outstanding_minor: int = Field(description="what the loan still owes by its schedule")


class Stage(StrEnum):
    POSTING = "posting"
    NOTIFYING = "notifying"
    COMPLETED = "completed"
    DECLINED = "declined"


TERMINAL_STAGES = frozenset({Stage.COMPLETED, Stage.DECLINED})


class RepaymentState(BaseModel):
    workflow_id: str
    loan_number: str
    stage: Stage = Stage.POSTING
    result: RepaymentResult | None = None
    error: str | None = None
    error_detail: str | None = None

    @property
    def posted(self) -> bool:
        return self.result is not None


# --- views (major units) -------------------------------------------------------------------


class PortionView(BaseModel):
    installment: int
    penalty: str
    fee: str
    interest: str
    principal: str


class RepaymentView(BaseModel):
    """A repayment as the API answers it: the split per component and per installment."""

    workflow_id: str
    loan_number: str
    journal_id: str
    value_date: date
    currency: str
    requested: str = Field(description="the amount asked for")
    amount: str = Field(description="what was taken from savings, or received in cash")
    not_taken: str = Field(
        description="from savings, what was asked for beyond the payoff: left in savings"
    )
    penalty: str
    fee: str
    interest: str
    principal: str
    overpayment: str = Field(
        description="cash received beyond the payoff: credited to savings, the loan is overpaid"
    )
    interest_waived: str
    interest_refunded: str = Field(
        description="interest paid in advance that this payoff gave back"
    )
    installments: list[PortionView]
    loan_state: str
    closed: bool
    outstanding: str


class PayoffQuoteView(BaseModel):
    """What closes the loan on `on`: interest earned to that day only; later interest waived."""

    loan_number: str
    on: date
    currency: str
    amount: str
    principal: str
    interest: str
    fees: str
    penalties: str
    interest_waived: str
    interest_refunded: str = Field(
        description="interest already paid for days after `on`: given back, taken off the amount"
    )


class StatementInstallment(BaseModel):
    number: int
    from_on: date
    due_on: date
    principal: str
    interest: str
    fee: str
    penalty: str
    interest_waived: str
    total: str = Field(description="what it charges: principal, interest less waived, fee, penalty")
    paid: str
    outstanding: str
    completed_on: date | None


class StatementTransaction(BaseModel):
    kind: str
    value_date: date
    amount: str
    principal: str
    interest: str
    fee: str
    penalty: str
    overpayment: str
    source: str | None
    journal_id: str
    reversed: bool
    principal_balance: str = Field(description="principal outstanding after this transaction")


class Outstanding(BaseModel):
    principal: str
    interest: str
    fee: str
    penalty: str
    total: str


class StatementView(BaseModel):
    loan_number: str
    member_number: str
    product: str
    currency: str
    principal: str
    state: str
    disbursed_on: date | None
    closed_on: date | None
    as_of: date
    outstanding: Outstanding
    days_past_due: int
    arrears_bucket: str
    overpaid: str
    schedule: list[StatementInstallment]
    transactions: list[StatementTransaction]
