"""Members: register, look up, search."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query

from activities.accounts import Requested, create_member
from activities.db import in_transaction
from activities.reads.books import MemberPage, member_view, search_members
from api.audit import ShownMembers
from api.deps import ANY_STAFF, Principal, Session, SessionsDep, require_roles
from api.errors import errors
from api.idempotency import IdempotencyKey
from schemas import types
from schemas.members import MemberCreate, MemberView

router = APIRouter(prefix="/v1/members", tags=["members"])

Registrar = Annotated[Principal, Depends(require_roles("teller", "branch_manager"))]
Reader = Annotated[Principal, Depends(require_roles(*ANY_STAFF))]
MemberNumber = Annotated[types.MemberNumber, Path(description="e.g. M0000042")]


@router.post("", status_code=201, responses=errors(s404="NotFound: no such branch"))
async def register_member(
    principal: Registrar, key: IdempotencyKey, body: MemberCreate, sessions: SessionsDep
) -> MemberView:
    """Register a member at a branch. Tellers and branch managers; needs an `Idempotency-Key`.

    The member starts `active` with KYC `unverified`; KYC review is its own process. The key is
    kept with the member: the same caller's request under the same key never creates a second.
    """

    async def work(session: Session) -> MemberView:
        member = await create_member(session, body, Requested(principal.id, key))
        return await member_view(session, member.member_number)

    return await in_transaction(sessions, work)


@router.get("/{member_number}")
async def get_member(
    _: Reader, member_number: MemberNumber, sessions: SessionsDep, shown: ShownMembers
) -> MemberView:
    """One member by member number (`M0000042`). Any staff role; audited."""
    async with sessions() as session:
        view = await member_view(session, member_number)
    shown.show(view.member_number)
    return view


@router.get("")
async def list_members(
    _: Reader,
    sessions: SessionsDep,
    shown: ShownMembers,
    q: Annotated[
        types.Search | None,
        Query(description="prefix of a member number, first, last or full name"),
    ] = None,
    branch: Annotated[types.BranchCode | None, Query(description="branch code")] = None,
    status: Literal["active", "dormant", "closed"] | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: types.Cursor | None = None,
) -> MemberPage:
    """Search members, oldest first, a page at a time. Any staff role; audited with every
    member on the page."""
    async with sessions() as session:
        page = await search_members(
            session, q=q, branch=branch, status=status, limit=limit, cursor=cursor
        )
    shown.show(*(m.member_number for m in page.items))
    return page
