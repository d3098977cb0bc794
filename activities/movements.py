"""Money movements in Postgres.

- What the API checks before it starts a MoneyMovement: the accounts exist, are open, are in the
  request's currency, and the amount fits that currency's scale, so bad input is refused with a
  clear error and no process.
- The workflow's own posting and holding activities: the ledger re-checks everything, and the
  basic KYC tier's daily limit (schemas/kyc_tier.py) is checked in the same transaction as the
  posting or the hold, so the workflow, not the API, is its authority.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.direct import DirectPool
from activities.errors import transaction, typed
from activities.ledger import engine as ledger_engine
from activities.ledger import holds as ledger_holds
from activities.ledger.chart import CASH, gl_code
from activities.tables import Currency, LedgerAccount, Member
from domain.money import AmountError, to_major, to_minor
from schemas.errors import BankflowError, ErrorCode
from schemas.kyc_tier import BasicTierLimit, minor_units
from schemas.ledger import HoldResult, JournalRequest, JournalResult
from schemas.movements import MovementCreate, MovementHold
from schemas.settings import Settings


@dataclass(frozen=True)
class Side:
    """A ledger account a movement debits or credits, and the branch it belongs to."""

    id: int
    code: str
    branch: str


@dataclass(frozen=True)
class ResolvedMovement:
    debit: Side
    credit: Side
    amount_minor: int
    scale: int
    branch: str


# Everything resolve_movement checks, in one statement on the API's DirectPool (every deposit
# makes it): the currency's scale, and per named account (`:roles` cash, from, to; `:codes` their
# numbers) its row, or NULLs when there is none.
RESOLVE = text(
    """
    SELECT (SELECT scale FROM currencies WHERE code = :currency), r.role, a.id, a.code, a.kind,
           a.status, a.currency, b.code
    FROM unnest(CAST(:roles AS text[]), CAST(:codes AS text[])) AS r(role, code)
    LEFT JOIN ledger_accounts a ON a.code = r.code
    LEFT JOIN branches b ON b.id = a.branch_id
    """
)


def _member_side(row: Sequence[Any] | None, number: str, currency: str) -> Side:
    """The account of a `RESOLVE` row as a member account in `currency`, or why it cannot be."""
    if row is None or row[2] is None:
        raise BankflowError(ErrorCode.ACCOUNT_NOT_FOUND, f"no account {number!r}")
    account_id, code, kind, status, account_currency, branch = row[2:]
    if kind == "gl":
        raise BankflowError(ErrorCode.FORBIDDEN, f"{number} is a GL account, not a member account")
    if status != "open":
        raise BankflowError(ErrorCode.ACCOUNT_CLOSED, f"account {number} is closed")
    if account_currency != currency:
        raise BankflowError(
            ErrorCode.CURRENCY_MISMATCH,
            f"account {number} is in {account_currency}, not {currency}",
        )
    return Side(account_id, code, branch or "")


async def resolve_movement(db: DirectPool, body: MovementCreate) -> ResolvedMovement:
    """The accounts and amount of a movement request, or the error that refuses it (unknown
    currency, an amount finer than its scale, a missing, closed, GL or other-currency account)."""
    named = {"from": body.from_account, "to": body.to_account}
    if body.kind in ("deposit", "withdrawal"):
        named["cash"] = gl_code(CASH, body.currency)
    wanted = {role: code for role, code in named.items() if code}
    rows = await db.rows(
        RESOLVE,
        {"currency": body.currency, "roles": list(wanted), "codes": list(wanted.values())},
    )
    scale = rows[0][0] if rows else None
    if scale is None:
        raise BankflowError(ErrorCode.CURRENCY_MISMATCH, f"unknown currency {body.currency!r}")
    try:
        amount_minor = to_minor(body.amount, scale)
    except AmountError as exc:
        raise BankflowError(ErrorCode.INVALID_AMOUNT, str(exc)) from exc
    found = {row[1]: row for row in rows}
    cash = None
    if "cash" in wanted:
        row = found["cash"]
        if row[2] is None:
            raise BankflowError(
                ErrorCode.CURRENCY_MISMATCH, f"the institution has no {body.currency} cash account"
            )
        cash = Side(row[2], row[3], row[7] or "")
    debit = (
        _member_side(found.get("from"), body.from_account, body.currency)
        if body.from_account
        else cash
    )
    credit = (
        _member_side(found.get("to"), body.to_account, body.currency) if body.to_account else cash
    )
    assert debit is not None and credit is not None
    member_side = credit if body.kind == "deposit" else debit
    return ResolvedMovement(debit, credit, amount_minor, int(scale), member_side.branch)


# What a member has taken out of their accounts in one currency: the movements posted for the
# value date (withdrawals, transfers to an account not theirs) that stand unreversed, and every
# movement still held for a supervisor (it will post with its own value date; until decided it
# counts now). `:me` is the movement asking, left out so a retried step counts the same.
TAKEN_OUT = text(
    """
    SELECT COALESCE((
        SELECT sum(p.amount_minor)
        FROM ledger_accounts d
        JOIN postings p ON p.debit_account_id = d.id
        JOIN journals j ON j.id = p.journal_id
        JOIN ledger_accounts c ON c.id = p.credit_account_id
        WHERE d.member_id = :member AND d.currency = :currency
          AND c.member_id IS DISTINCT FROM :member
          AND j.value_date = :day AND j.kind IN ('withdrawal', 'transfer')
          AND j.process_id LIKE 'movement-%' AND j.process_id <> :me
          AND NOT EXISTS (SELECT 1 FROM journals r WHERE r.reverses_journal_id = j.id)
    ), 0) + COALESCE((
        SELECT sum(h.amount_minor)
        FROM ledger_accounts d
        JOIN holds h ON h.debit_account_id = d.id
        JOIN ledger_accounts c ON c.id = h.credit_account_id
        WHERE d.member_id = :member AND d.currency = :currency
          AND c.member_id IS DISTINCT FROM :member
          AND h.status = 'pending' AND h.process_id LIKE 'movement-%' AND h.process_id <> :me
    ), 0)
    """
)


@dataclass(frozen=True)
class Outflow:
    """One movement as the basic tier sees it."""

    process_id: str
    kind: str
    debit_account_id: int
    credit_account_id: int
    amount_minor: int
    currency: str
    value_date: date


async def check_basic_tier(
    session: AsyncSession, limits: dict[str, BasicTierLimit], out: Outflow
) -> None:
    """Refuse (KycTierLimit) a withdrawal or a transfer to someone else that would take a member
    who is not KYC-verified past the basic tier's limit for the day. Deposits and transfers
    between a member's own accounts take nothing out. The member row is locked first: two
    concurrent movements of one member then count each other, never both fitting alone."""
    if out.kind == "deposit":
        return
    debit = await session.get(LedgerAccount, out.debit_account_id)
    credit = await session.get(LedgerAccount, out.credit_account_id)
    if debit is None or debit.member_id is None or credit is None:
        return  # not a member's money, or an unknown account the ledger refuses itself
    if credit.member_id == debit.member_id:
        return
    status = await session.scalar(select(Member.kyc_status).where(Member.id == debit.member_id))
    if status == "verified":
        return
    member = await session.get(Member, debit.member_id, with_for_update=True)
    assert member is not None
    if member.kyc_status == "verified":
        return
    cur = out.currency
    scale = await session.scalar(select(Currency.scale).where(Currency.code == cur))
    assert scale is not None, "an account's currency is in the currencies table"
    limit = limits.get(cur)
    if limit is None:
        raise BankflowError(
            ErrorCode.KYC_TIER_LIMIT,
            f"the account holder is not KYC-verified and the basic tier has no {cur} limit "
            "(BANKFLOW_KYC_BASIC_TIER_LIMITS): only verified members take money out in it",
        )
    allowed = minor_units(limit.withdrawals_per_day, scale)
    taken = int(
        await session.scalar(
            TAKEN_OUT,
            {"member": member.id, "currency": cur, "day": out.value_date, "me": out.process_id},
        )
        or 0
    )
    if taken + out.amount_minor > allowed:
        raise BankflowError(
            ErrorCode.KYC_TIER_LIMIT,
            f"the account holder is not KYC-verified: the basic tier allows "
            f"{to_major(allowed, scale)} {cur} a day in withdrawals and transfers out; "
            f"{to_major(taken, scale)} {cur} taken out on {out.value_date}, "
            f"{to_major(out.amount_minor, scale)} {cur} more asked",
        )


class MovementActivities:
    """MoneyMovement's posting and holding steps: the basic-tier check, then the ledger, in one
    transaction (the ledger engine's own refusals are typed as before). A deposit takes nothing
    out, so the basic tier has nothing to check: it posts as the engine's one statement on the
    DirectPool, its own transaction."""

    def __init__(
        self, settings: Settings, sessions: async_sessionmaker[AsyncSession], direct: DirectPool
    ) -> None:
        self.limits = settings.kyc_basic_tier_limits
        self.sessions = sessions
        self.direct = direct

    @activity.defn(name="post_movement")
    async def post_movement(self, req: JournalRequest) -> JournalResult:
        if req.kind == "deposit":
            return await typed(ledger_engine.post_journal(self.direct, req))
        [line] = req.postings
        out = Outflow(
            req.process_id or req.journal_id, req.kind, line.debit_account_id,
            line.credit_account_id, line.amount_minor, line.currency, req.value_date,
        )  # fmt: skip

        async def work(session: AsyncSession) -> JournalResult:
            await check_basic_tier(session, self.limits, out)
            return await ledger_engine.post_journal(session, req)

        return await transaction(self.sessions, work)

    @activity.defn(name="hold_movement")
    async def hold_movement(self, req: MovementHold) -> HoldResult:
        h = req.hold
        out = Outflow(
            h.process_id or h.hold_id, req.kind, h.debit_account_id, h.credit_account_id,
            h.amount_minor, h.currency, req.value_date,
        )  # fmt: skip

        async def work(session: AsyncSession) -> HoldResult:
            await check_basic_tier(session, self.limits, out)
            return await ledger_holds.place_hold(session, h)

        return await transaction(self.sessions, work)

    def all(self) -> list[Callable[..., Awaitable[object]]]:
        return [self.post_movement, self.hold_movement]
