"""Member accounts: open, view, statement, close."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from activities import accounts
from activities.db import in_transaction
from activities.reads import accounts as account_reads
from api.audit import ShownMembers
from api.deps import (
    ANY_STAFF,
    DirectDep,
    Principal,
    Session,
    SessionsDep,
    require_roles,
)
from api.errors import errors
from api.idempotency import IdempotencyKey
from schemas import types
from schemas.errors import BankflowError, ErrorCode
from schemas.ledger import LEDGER_READER_ROLES
from schemas.members import AccountOpen, AccountView, Statement

router = APIRouter(prefix="/v1", tags=["accounts"])

Opener = Annotated[Principal, Depends(require_roles("teller", "branch_manager"))]
Manager = Annotated[Principal, Depends(require_roles("branch_manager"))]
Reader = Annotated[Principal, Depends(require_roles(*ANY_STAFF))]
AccountNumber = Annotated[types.AccountNumber, Path(description="e.g. SV00000042")]
# A GL account is the institution's books: only the trial balance's readers see it. The access
# matrix (README, Security) reads this from the route's OpenAPI extension.
LEDGER_READER = require_roles(*LEDGER_READER_ROLES)
GL_ACCESS = {"x-gl-account-roles": sorted(LEDGER_READER_ROLES)}


async def _readable(principal: Principal, session: Session, number: str) -> None:
    """Any staff reads a member's account; a GL account needs a ledger reader (403 otherwise)."""
    if await account_reads.account_kind(session, number) == "gl":
        await LEDGER_READER(principal)


@router.post(
    "/members/{member_number}/accounts",
    status_code=201,
    responses=errors(
        s404="NotFound: no such member",
        s422="CurrencyMismatch, AccountClosed (the member is not active), or ValidationError",
    ),
)
async def open_account(
    principal: Opener,
    key: IdempotencyKey,
    member_number: types.MemberNumber,
    body: AccountOpen,
    sessions: SessionsDep,
) -> AccountView:
    """Open a savings or shares account for an active member in a currency the institution
    keeps a chart of accounts for. Tellers and branch managers; needs an `Idempotency-Key`
    (kept with the account: the same caller's request under the same key opens one)."""

    async def work(session: Session) -> AccountView:
        member = await accounts.get_member(session, member_number)
        requested = accounts.Requested(principal.id, key)
        account = await accounts.open_account(session, member, body, requested)
        return await account_reads.account_view(session, account)

    return await in_transaction(sessions, work)


@router.get("/accounts/{number}", responses=errors(s404="AccountNotFound"), openapi_extra=GL_ACCESS)
async def get_account(
    principal: Reader, number: AccountNumber, direct: DirectDep, shown: ShownMembers
) -> AccountView:
    """An account with its posted balance, available balance and pending amounts, as decimal
    strings in major units of its currency. A member's account: any staff role; a GL account:
    finance, branch managers, ops, admin. Audited."""
    view = await account_reads.get_account_view(direct, number)
    if view.kind == "gl":  # refused before anything of it is answered
        await LEDGER_READER(principal)
    shown.show(view.member_number)
    return view


@router.get(
    "/accounts/{number}/statement",
    responses=errors(s404="AccountNotFound"),
    openapi_extra=GL_ACCESS,
)
async def get_statement(
    principal: Reader,
    number: AccountNumber,
    sessions: SessionsDep,
    shown: ShownMembers,
    date_from: Annotated[
        types.Day | None, Query(alias="from", description="first value date")
    ] = None,
    date_to: Annotated[types.Day | None, Query(alias="to", description="last value date")] = None,
    after: types.Cursor | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Statement:
    """Postings by value date range in posting order, each with the running balance; opening and
    closing balances of the range. Page with `after`. A member's account: any staff role; a GL
    account: finance, branch managers, ops, admin. Audited."""
    if date_from and date_to and date_from > date_to:
        raise BankflowError(ErrorCode.VALIDATION, "`from` must not be after `to`")
    async with sessions() as session:
        await _readable(principal, session, number)
        page = await account_reads.statement(
            session, number, date_from=date_from, date_to=date_to, after=after, limit=limit
        )
    shown.show(page.account.member_number)
    return page


@router.post(
    "/accounts/{number}/close",
    responses=errors(s404="AccountNotFound", s409="AccountNotEmpty: a balance or a pending hold"),
)
async def close_account(_: Manager, number: AccountNumber, sessions: SessionsDep) -> AccountView:
    """Close a member account at a zero balance with nothing pending (409 AccountNotEmpty
    otherwise). Closing a closed account returns it unchanged. Branch managers."""

    async def work(session: Session) -> AccountView:
        account = await accounts.close_account(session, number)
        return await account_reads.account_view(session, account)

    return await in_transaction(sessions, work)
