"""Ledger payloads: journals, postings, holds, reversals, verification and trial balance."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.types import CurrencyCode

# Who reads the institution's own books: the trial balance, and a GL account's view and
# statement (a member's account is read by any staff).
LEDGER_READER_ROLES = ("finance", "branch_manager", "ops")


class PostingLine(BaseModel):
    model_config = ConfigDict(frozen=True)
    debit_account_id: int
    credit_account_id: int
    amount_minor: int = Field(gt=0)
    currency: CurrencyCode


class JournalRequest(BaseModel):
    journal_id: str = Field(min_length=1, max_length=200)
    kind: str = Field(min_length=1, max_length=32)
    value_date: date
    postings: list[PostingLine] = Field(min_length=1)
    description: str = ""
    process_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class PostingView(BaseModel):
    line: int
    debit_account_id: int
    credit_account_id: int
    amount_minor: int
    currency: str


class JournalResult(BaseModel):
    journal_id: str
    kind: str
    value_date: date
    description: str
    reverses_journal_id: str | None
    reversed_by_journal_id: str | None = None
    created_at: datetime
    postings: list[PostingView]
    created: bool = Field(description="False when an identical earlier request had posted it")


class HoldRequest(BaseModel):
    hold_id: str = Field(min_length=1, max_length=200)
    debit_account_id: int
    credit_account_id: int
    amount_minor: int = Field(gt=0)
    currency: CurrencyCode
    description: str = ""
    process_id: str | None = None


class PostHoldRequest(BaseModel):
    hold_id: str
    journal_id: str
    kind: str
    value_date: date
    description: str = ""


class VoidHoldRequest(BaseModel):
    hold_id: str
    reason: str


class HoldResult(BaseModel):
    hold_id: str
    status: str
    amount_minor: int
    currency: str
    journal_id: str | None


class ReversalRequest(BaseModel):
    original_journal_id: str
    journal_id: str
    value_date: date
    description: str = ""
    process_id: str | None = None


class CheckResult(BaseModel):
    name: str
    ok: bool
    detail: str


class VerifyReport(BaseModel):
    ok: bool
    checks: list[CheckResult]


def hold_hash(req: HoldRequest) -> str:
    line = [req.debit_account_id, req.credit_account_id, req.amount_minor, req.currency]
    return hashlib.sha256(json.dumps(line).encode()).hexdigest()
