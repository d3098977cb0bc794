"""Who a notification goes to: a member or staff user by id, resolved to a name and an address
here, inside the activity, so that neither ever travels through Temporal (its history is kept,
replicated and shown in the Web UI; Postgres is where personal data lives)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.tables import Member, StaffRole, StaffUser
from schemas.notifications import NotificationRequest


@dataclass(frozen=True)
class Addressee:
    email: str
    name: str

    def __repr__(self) -> str:  # a traceback or log line shows that there was one, not who
        return "Addressee(<personal data>)"


async def addressee(session: AsyncSession, req: NotificationRequest) -> Addressee | None:
    """The request's recipient, or None when they have no address (or are disabled staff)."""
    if req.recipient is not None:  # an institution's mailbox, or a request from before ids
        return Addressee(str(req.recipient), req.recipient_name)
    assert req.recipient_id is not None
    if req.recipient_kind == "member":
        member = await session.get(Member, req.recipient_id)
        if member is None or not member.email:
            return None
        return Addressee(member.email, f"{member.first_name} {member.last_name}")
    user = await session.get(StaffUser, req.recipient_id)
    if user is None or not user.is_active or not user.email:
        return None
    return Addressee(user.email, user.full_name)


async def staff_ids(session: AsyncSession, roles: list[str]) -> list[int]:
    """Active staff holding any of `roles`, with an e-mail address: the SLA reminders' audience."""
    rows = await session.scalars(
        select(StaffUser.id)
        .join(StaffRole, StaffRole.user_id == StaffUser.id)
        .where(
            StaffRole.role.in_(roles),
            StaffUser.is_active.is_(True),
            StaffUser.email.is_not(None),
        )
        .distinct()
        .order_by(StaffUser.id)
    )
    return list(rows)
