"""Ledger read models: trial balance and journals."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from activities.reads import books
from activities.reads.books import JournalView, TrialBalance
from api.deps import Principal, SessionsDep, require_roles
from api.errors import errors
from schemas import types
from schemas.ledger import LEDGER_READER_ROLES

router = APIRouter(prefix="/v1", tags=["ledger"])

TrialBalanceReader = Annotated[Principal, Depends(require_roles(*LEDGER_READER_ROLES))]
JournalReader = Annotated[
    Principal, Depends(require_roles("finance", "branch_manager", "ops", "compliance_officer"))
]


@router.get(
    "/ledger/trial-balance", responses=errors(s404="NotFound: no chart of accounts in the currency")
)
async def trial_balance(
    _: TrialBalanceReader,
    sessions: SessionsDep,
    currency: Annotated[types.CurrencyCode, Query(description="ISO 4217 code")],
) -> TrialBalance:
    """Posted balance of every GL account in one currency, member accounts rolled into their
    control account; total debits equal total credits. Finance, branch managers, ops, admin."""
    async with sessions() as session:
        return await books.trial_balance(session, currency)


@router.get("/journals/{journal_id}", responses=errors(s404="JournalNotFound"))
async def get_journal(
    _: JournalReader,
    journal_id: types.JournalId,
    sessions: SessionsDep,
) -> JournalView:
    """A journal: its postings with account numbers and amounts, and which journal it reverses
    or is reversed by. Finance, branch managers, ops, compliance officers, admin."""
    async with sessions() as session:
        return await books.journal_view(session, journal_id)
