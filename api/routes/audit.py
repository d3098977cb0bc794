"""The audit trail for compliance: who did what, and who saw which member's data."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from activities.audit_trail import audit_page
from api.audit import ShownMembers
from api.deps import Principal, SessionsDep, require_roles
from schemas import types
from schemas.audit import AuditPage

router = APIRouter(prefix="/v1/audit", tags=["audit"])

Compliance = Annotated[Principal, Depends(require_roles("compliance_officer"))]


@router.get("")
async def list_audit(
    _: Compliance,
    sessions: SessionsDep,
    shown: ShownMembers,
    member: Annotated[
        types.MemberNumber | None,
        Query(
            description="only entries naming this member: reads that showed the member's data "
            "and commands on its path",
        ),
    ] = None,
    before: Annotated[
        int | None,
        Query(ge=1, le=types.MAX_BIGINT, description="`next_cursor` of the last page"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> AuditPage:
    """Audit entries, newest first, a page at a time: commands (who, what, from where, with
    which Idempotency-Key, the outcome) and reads of personal data (who saw which members).
    Compliance officers and admins; this read is itself audited."""
    shown.show(member)
    async with sessions() as session:
        return await audit_page(session, member=member, before=before, limit=limit)
