"""The notification outbox: every message the processes sent or stored, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from activities.reads.notifications import notification_page
from api.audit import ShownMembers
from api.deps import Principal, SessionsDep, require_roles
from schemas import types
from schemas.notifications import NotificationPage

router = APIRouter(prefix="/v1/notifications", tags=["notifications"])

Reader = Annotated[Principal, Depends(require_roles("ops", "compliance_officer"))]


@router.get("")
async def list_notifications(
    _: Reader,
    sessions: SessionsDep,
    _shown: ShownMembers,
    process_id: types.ProcessId | None = None,
    recipient: types.Email | None = None,
    template: types.Template | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: types.Cursor | None = None,
) -> NotificationPage:
    """Messages in the outbox (and those SendGrid accepted), newest first. Ops and compliance.

    With the default `outbox` transport this is where development e-mail arrives. Audited:
    messages hold recipients' names and addresses.
    """
    async with sessions() as session:
        return await notification_page(
            session,
            limit=limit,
            process_id=process_id,
            recipient=recipient,
            template=template,
            before=before,
        )
