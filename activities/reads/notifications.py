"""The notification outbox as the API pages it: newest first, keyset on the id."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.tables import Notification
from schemas.notifications import NotificationPage, NotificationView


async def notification_page(
    session: AsyncSession,
    *,
    limit: int,
    process_id: str | None = None,
    recipient: str | None = None,
    template: str | None = None,
    before: int | None = None,
) -> NotificationPage:
    query = select(Notification).order_by(Notification.id.desc()).limit(limit + 1)
    if process_id is not None:
        query = query.where(Notification.process_id == process_id)
    if recipient is not None:
        query = query.where(Notification.recipient == recipient)
    if template is not None:
        query = query.where(Notification.template == template)
    if before is not None:
        query = query.where(Notification.id < before)
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
