"""Notifications: the one contract every process uses to e-mail members and staff."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, EmailStr, Field


class NotificationRequest(BaseModel):
    """Send `template` to one recipient. Idempotent per (process_id, template, recipient)."""

    process_id: str = Field(description="workflow id (or other business key) that sends it")
    template: str = Field(pattern=r"^[a-z0-9_]+$", description="name under activities/templates/")
    recipient: EmailStr
    recipient_name: str = ""
    context: dict[str, Any] = Field(default_factory=dict)


class NotificationResult(BaseModel):
    notification_id: int
    status: Literal["sent", "stored", "duplicate"]
    transport: str


class NotificationView(BaseModel):
    """One message as kept in the outbox (every transport records what it delivered)."""

    id: int
    process_id: str
    template: str
    recipient: str
    recipient_name: str
    subject: str
    body_text: str
    body_html: str
    transport: str
    status: str
    provider_message_id: str | None
    created_at: datetime
    sent_at: datetime | None


class NotificationPage(BaseModel):
    items: list[NotificationView]
    next_cursor: int | None = Field(description="`id` to pass as `before` for the next page")
