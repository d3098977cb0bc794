"""Members and their accounts: requests and views."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from schemas.types import BranchCode, CurrencyCode, Day, Name

MemberAccountKind = Literal["savings", "shares"]


class MemberCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    first_name: Name
    last_name: Name
    date_of_birth: Day
    email: EmailStr | None = None
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9 ()-]{6,31}$")
    branch_code: BranchCode

    @field_validator("date_of_birth")
    @classmethod
    def _not_in_future(cls, value: date) -> date:
        if value > date.today():
            raise ValueError("date of birth is in the future")
        return value


class MemberView(BaseModel):
    id: int
    member_number: str
    first_name: str
    last_name: str
    email: str | None
    phone: str | None
    date_of_birth: date
    branch_code: str
    status: str
    kyc_status: str
    kyc_tier: int
    created_at: datetime


class AccountOpen(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: MemberAccountKind = "savings"
    currency: CurrencyCode


class AccountView(BaseModel):
    id: int
    number: str
    name: str
    kind: str
    currency: str
    member_number: str | None
    status: str
    balance: str = Field(description="posted credits minus debits, in major units")
    available: str = Field(description="balance less pending holds, in major units")
    pending_debits: str
    pending_credits: str
    opened_at: datetime
    closed_at: datetime | None


class InterestDetail(BaseModel):
    """What a month-end interest line is made of: the ledger posts the net, the record keeps
    the gross earned and the tax withheld."""

    period: str = Field(description="YYYY-MM")
    gross: str
    tax: str
    net: str


class StatementLine(BaseModel):
    posting_id: int
    journal_id: str
    kind: str
    value_date: date
    posted_at: datetime
    description: str
    debit: str | None
    credit: str | None
    balance: str
    interest: InterestDetail | None = Field(
        default=None, description="on a month-end interest line: gross, tax withheld and net"
    )


class Statement(BaseModel):
    account: AccountView
    opening_balance: str
    closing_balance: str
    lines: list[StatementLine]
    next_cursor: int | None = Field(description="posting id to pass as `after` for the next page")
