"""What the API checks before it starts a MoneyMovement: the accounts exist, are open, are in the
request's currency, and the amount fits that currency's scale. The workflow re-checks everything
in the ledger transaction; this is so bad input is refused with a clear error and no process."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.accounts import get_account
from activities.models import Branch, Currency, LedgerAccount
from activities.setup import CASH, gl_code
from domain.money import AmountError, to_minor
from schemas.errors import BankflowError, ErrorCode
from schemas.movements import MovementCreate


@dataclass(frozen=True)
class ResolvedMovement:
    debit: LedgerAccount
    credit: LedgerAccount
    amount_minor: int
    scale: int
    branch: str


async def _member_account(session: AsyncSession, number: str, currency: str) -> LedgerAccount:
    account = await get_account(session, number)
    if account.kind == "gl":
        raise BankflowError(ErrorCode.FORBIDDEN, f"{number} is a GL account, not a member account")
    if account.status != "open":
        raise BankflowError(ErrorCode.ACCOUNT_CLOSED, f"account {number} is closed")
    if account.currency != currency:
        raise BankflowError(
            ErrorCode.CURRENCY_MISMATCH,
            f"account {number} is in {account.currency}, not {currency}",
        )
    return account


async def resolve_movement(session: AsyncSession, body: MovementCreate) -> ResolvedMovement:
    scale = await session.scalar(select(Currency.scale).where(Currency.code == body.currency))
    if scale is None:
        raise BankflowError(ErrorCode.CURRENCY_MISMATCH, f"unknown currency {body.currency!r}")
    try:
        amount_minor = to_minor(body.amount, scale)
    except AmountError as exc:
        raise BankflowError(ErrorCode.INVALID_AMOUNT, str(exc)) from exc
    cash = None
    if body.kind in ("deposit", "withdrawal"):
        cash = await session.scalar(
            select(LedgerAccount).where(LedgerAccount.code == gl_code(CASH, body.currency))
        )
        if cash is None:
            raise BankflowError(
                ErrorCode.CURRENCY_MISMATCH, f"the institution has no {body.currency} cash account"
            )
    debit = (
        await _member_account(session, body.from_account, body.currency)
        if body.from_account
        else cash
    )
    credit = (
        await _member_account(session, body.to_account, body.currency) if body.to_account else cash
    )
    assert debit is not None and credit is not None
    member_side = credit if body.kind == "deposit" else debit
    branch = await session.scalar(select(Branch.code).where(Branch.id == member_side.branch_id))
    return ResolvedMovement(debit, credit, amount_minor, int(scale), branch or "")
