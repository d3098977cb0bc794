"""Money movements (deposit, withdrawal, transfer): API bodies, workflow input, state, decisions."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.ledger import HoldRequest
from schemas.types import AccountNumber, Amount, CurrencyCode, Reason

MovementKind = Literal["deposit", "withdrawal", "transfer"]

# The workflow, not the API, is the authority on who may decide (DESIGN.md, "API").
APPROVER_ROLES = frozenset({"branch_manager"})
REQUESTER_ROLES = ("teller", "branch_manager")


class Stage(StrEnum):
    POSTING = "posting"
    PLACING_HOLD = "placing_hold"
    AWAITING_APPROVAL = "awaiting_approval"
    POSTING_HOLD = "posting_hold"
    VOIDING_HOLD = "voiding_hold"
    COMPLETED = "completed"
    DECLINED = "declined"
    REJECTED = "rejected"
    EXPIRED = "expired"


TERMINAL_STAGES = frozenset({Stage.COMPLETED, Stage.DECLINED, Stage.REJECTED, Stage.EXPIRED})


class MovementCreate(BaseModel):
    """A teller's request. Deposits name `to_account`, withdrawals `from_account`, transfers both."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    kind: MovementKind
    amount: Amount = Field(description='decimal string in major units, e.g. "250.00"')
    currency: CurrencyCode
    from_account: AccountNumber | None = None
    to_account: AccountNumber | None = None
    narrative: Reason = ""

    @model_validator(mode="after")
    def _accounts_fit_kind(self) -> MovementCreate:
        needs_from = self.kind in ("withdrawal", "transfer")
        needs_to = self.kind in ("deposit", "transfer")
        if needs_from != (self.from_account is not None):
            raise ValueError(f"a {self.kind} {'needs' if needs_from else 'takes no'} from_account")
        if needs_to != (self.to_account is not None):
            raise ValueError(f"a {self.kind} {'needs' if needs_to else 'takes no'} to_account")
        if self.from_account is not None and self.from_account == self.to_account:
            raise ValueError("from_account and to_account must differ")
        return self


class MovementInput(BaseModel):
    """Everything the workflow needs, resolved and validated by the API, fixed in history."""

    movement_id: str
    kind: MovementKind
    debit_account_id: int
    credit_account_id: int
    debit_account: str
    credit_account: str
    amount_minor: int = Field(gt=0)
    currency: CurrencyCode
    scale: int
    narrative: Reason = ""
    value_date: date
    branch: str
    requested_by_id: int
    requested_by: str
    approval_threshold_minor: int = Field(ge=0)
    approval_timeout: timedelta


class MovementHold(BaseModel):
    """hold_movement's input: the hold, and what the basic KYC tier counts it as."""

    kind: MovementKind
    value_date: date
    hold: HoldRequest


class DecisionInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    approve: bool
    reason: Reason = ""
    approver_id: int
    approver: str
    approver_roles: list[str]


class DecisionRequest(BaseModel):
    """A supervisor's decision on a movement awaiting approval."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    approve: bool
    reason: Reason = ""


class HistoryEntry(BaseModel):
    at: datetime
    stage: Stage
    note: str = ""


class MovementState(BaseModel):
    movement_id: str
    kind: MovementKind
    stage: Stage
    amount_minor: int
    currency: str
    scale: int
    debit_account: str
    credit_account: str
    needs_approval: bool
    requested_by: str
    assigned_role: str | None = None
    decided_by: str | None = None
    decision_reason: str | None = None
    hold_id: str | None = None
    journal_id: str | None = None
    error: str | None = None
    error_detail: str | None = None
    expires_at: datetime | None = None
    history: list[HistoryEntry] = Field(default_factory=list)

    @classmethod
    def initial(cls, inp: MovementInput) -> MovementState:
        """The state before any step ran; the threshold rule lives here, in one place."""
        return cls(
            movement_id=inp.movement_id,
            kind=inp.kind,
            stage=Stage.POSTING,
            amount_minor=inp.amount_minor,
            currency=inp.currency,
            scale=inp.scale,
            debit_account=inp.debit_account,
            credit_account=inp.credit_account,
            needs_approval=inp.kind != "deposit"
            and inp.amount_minor > inp.approval_threshold_minor,
            requested_by=inp.requested_by,
        )


class MovementSummary(BaseModel):
    """One line of a movement list, read from Temporal's visibility store."""

    movement_id: str
    workflow_id: str
    status: str
    stage: str | None
    amount_minor: int | None
    currency: str | None
    branch: str | None
    started_at: datetime | None


class MovementView(BaseModel):
    """What the API returns: the workflow's state with amounts as major-unit strings."""

    movement_id: str
    workflow_id: str
    kind: MovementKind
    stage: Stage
    amount: str
    currency: str
    from_account: str | None
    to_account: str | None
    needs_approval: bool
    requested_by: str
    assigned_role: str | None
    decided_by: str | None
    decision_reason: str | None
    journal_id: str | None
    reversed_by_journal_id: str | None = Field(
        default=None, description="the reversal of the movement's journal, once one is posted"
    )
    error: str | None
    error_detail: str | None
    expires_at: datetime | None
    history: list[HistoryEntry]
