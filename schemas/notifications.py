"""Notifications: the one contract every process uses to e-mail members and staff."""

from __future__ import annotations

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
