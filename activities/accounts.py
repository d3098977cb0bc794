"""Members and member accounts: create, open, close. Each function runs inside the caller's
transaction; none of them moves money (that is the ledger engine's job, driven by workflows).

Creating a member and opening an account through the API remember the caller's Idempotency-Key
on the row (unique per creator): if the request is run again - its API process died, or Postgres
restarted before the answer was kept - it finds that row instead of creating a second one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from activities.ledger.chart import CONTROL_ACCOUNT, gl_code
from activities.tables import Branch, Currency, LedgerAccount, Member
from schemas.errors import BankflowError, ErrorCode
from schemas.members import AccountOpen, MemberCreate

ACCOUNT_PREFIX = {"savings": "SV", "shares": "SH", "loan": "LN"}


async def _next_id(session: AsyncSession, table: str) -> int:
    value = await session.scalar(text(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id'))"))
    assert value is not None
    return int(value)


@dataclass(frozen=True)
class Requested:
    """Who asked, under which Idempotency-Key: a repeat by them finds what they created."""

    by_user_id: int
    key: str


Keyed = TypeVar("Keyed", Member, LedgerAccount)
# Each keyed table: the column naming its creator, and the unique constraint on (creator, key).
_CREATOR = {
    Member: ("created_by_id", "uq_members_created_by_key"),
    LedgerAccount: ("opened_by_id", "uq_ledger_accounts_opened_by_key"),
}


async def _by_key(
    session: AsyncSession, model: type[Keyed], requested: Requested | None
) -> Keyed | None:
    if requested is None:
        return None
    creator = getattr(model, _CREATOR[model][0])
    return await session.scalar(
        select(model).where(creator == requested.by_user_id, model.idempotency_key == requested.key)
    )


async def _insert_once(
    session: AsyncSession, model: type[Keyed], values: dict[str, Any], requested: Requested | None
) -> Keyed:
    """Insert the row; under a key that this user already created one with, find that one.
    ON CONFLICT on the key: a concurrent repeat waits for the first to commit, then finds it."""
    creator, constraint = _CREATOR[model]
    if requested is not None:
        values = values | {creator: requested.by_user_id, "idempotency_key": requested.key}
    inserted = await session.scalar(
        insert(model)
        .values(values)
        .on_conflict_do_nothing(constraint=constraint)
        .returning(model.id)
    )
    row = await (
        session.get(model, inserted) if inserted is not None else _by_key(session, model, requested)
    )
    assert row is not None
    return row


async def create_member(
    session: AsyncSession, req: MemberCreate, requested: Requested | None = None
) -> Member:
    found = await _by_key(session, Member, requested)
    if found is not None:
        return found
    branch_id = await session.scalar(select(Branch.id).where(Branch.code == req.branch_code))
    if branch_id is None:
        raise BankflowError(ErrorCode.NOT_FOUND, f"no branch {req.branch_code!r}")
    member_id = await _next_id(session, "members")
    values = {
        "id": member_id,
        "member_number": f"M{member_id:07d}",
        "first_name": req.first_name,
        "last_name": req.last_name,
        "date_of_birth": req.date_of_birth,
        "email": req.email,
        "phone": req.phone,
        "branch_id": branch_id,
    }
    return await _insert_once(session, Member, values, requested)


async def get_member(session: AsyncSession, member_number: str) -> Member:
    member = await session.scalar(select(Member).where(Member.member_number == member_number))
    if member is None:
        raise BankflowError(ErrorCode.NOT_FOUND, f"no member {member_number!r}")
    return member


async def open_account(
    session: AsyncSession, member: Member, req: AccountOpen, requested: Requested | None = None
) -> LedgerAccount:
    """Open a savings or shares account under its GL control account."""
    return await open_member_account(session, member, req.kind, req.currency, requested)


async def open_member_account(
    session: AsyncSession,
    member: Member,
    kind: str,
    currency: str,
    requested: Requested | None = None,
) -> LedgerAccount:
    """Open a member account of `kind` (savings, shares, loan) under its GL control account."""
    found = await _by_key(session, LedgerAccount, requested)
    if found is not None:
        return found
    if member.status != "active":
        raise BankflowError(
            ErrorCode.ACCOUNT_CLOSED, f"member {member.member_number} is {member.status}"
        )
    if await session.get(Currency, currency) is None:
        raise BankflowError(ErrorCode.CURRENCY_MISMATCH, f"unknown currency {currency!r}")
    control = CONTROL_ACCOUNT[kind]
    control_id = await session.scalar(
        select(LedgerAccount.id).where(LedgerAccount.code == gl_code(control, currency))
    )
    if control_id is None:
        raise BankflowError(
            ErrorCode.CURRENCY_MISMATCH, f"the institution has no {currency} chart of accounts"
        )
    account_id = await _next_id(session, "ledger_accounts")
    values = {
        "id": account_id,
        "code": f"{ACCOUNT_PREFIX[kind]}{account_id:08d}",
        "name": f"{kind.title()} of {member.member_number}",
        "kind": kind,
        "gl_type": control.gl_type,
        "currency": currency,
        "member_id": member.id,
        "branch_id": member.branch_id,
        "control_account_id": control_id,
        # Savings and shares never go overdrawn; a loan is never repaid beyond what it lent.
        "debits_must_not_exceed_credits": kind != "loan",
        "credits_must_not_exceed_debits": kind == "loan",
    }
    return await _insert_once(session, LedgerAccount, values, requested)


async def get_account(session: AsyncSession, number: str, *, lock: bool = False) -> LedgerAccount:
    query = select(LedgerAccount).where(LedgerAccount.code == number)
    if lock:
        query = query.with_for_update()
    account = await session.scalar(query)
    if account is None:
        raise BankflowError(ErrorCode.ACCOUNT_NOT_FOUND, f"no account {number!r}")
    return account


async def close_account(session: AsyncSession, number: str) -> LedgerAccount:
    """Close a member account; only at a zero balance with nothing pending (row locked first)."""
    account = await get_account(session, number, lock=True)
    if account.kind == "gl":
        raise BankflowError(ErrorCode.FORBIDDEN, "GL accounts are not closed through this route")
    if account.status == "closed":
        return account
    if (
        account.debits_posted_minor != account.credits_posted_minor
        or account.debits_pending_minor
        or account.credits_pending_minor
    ):
        raise BankflowError(
            ErrorCode.ACCOUNT_NOT_EMPTY, f"account {number} must have a zero balance to close"
        )
    await session.execute(
        update(LedgerAccount)
        .where(LedgerAccount.id == account.id)
        .values(status="closed", closed_at=func.now())
    )
    await session.refresh(account)
    return account
