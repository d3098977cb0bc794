"""The notification outbox: every message the processes sent or stored, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select

from activities.tables import Notification
from api.audit import ShownMembers
from api.deps import Principal, SessionsDep, require_roles
from schemas import types
from schemas.notifications import NotificationPage, NotificationView

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
    query = select(Notification).order_by(Notification.id.desc()).limit(limit + 1)
    if process_id is not None:
        query = query.where(Notification.process_id == process_id)
    if recipient is not None:
        query = query.where(Notification.recipient == recipient)
    if template is not None:
        query = query.where(Notification.template == template)
    if before is not None:
        query = query.where(Notification.id < before)
    async with sessions() as session:
        rows = list(await session.scalars(query))
    items = [
        NotificationView(
            id=n.id,
            process_id=n.process_id,
            template=n.template,
            recipient=n.recipient,
            recipient_name=n.recipient_name,
            subject=n.subject,
            body_text=n.body_text,
            body_html=n.body_html,
            transport=n.transport,
            status=n.status,
            provider_message_id=n.provider_message_id,
            created_at=n.created_at,
            sent_at=n.sent_at,
        )
        for n in rows[:limit]
    ]
    return NotificationPage(items=items, next_cursor=items[-1].id if len(rows) > limit else None)
