"""Notifications: the one contract every process uses to e-mail members and staff."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, EmailStr, Field, model_validator

RecipientKind = Literal["member", "staff"]


class NotificationRequest(BaseModel):
    """Send `template` to one recipient. Idempotent per (process_id, template, recipient address).

    A person is named by kind and id (`recipient_kind`, `recipient_id`); the activity looks up
    their name and address in Postgres, so neither enters a Temporal payload. `recipient` is for
    an institution's own mailbox (the finance team's month-end summary), never a person's.
    Requests scheduled before recipient ids (workflows still running from then) carry a member's
    address there too, and are still delivered.
    """

    process_id: str = Field(description="workflow id (or other business key) that sends it")
    template: str = Field(pattern=r"^[a-z0-9_]+$", description="name under activities/templates/")
    recipient_kind: RecipientKind | None = None
    recipient_id: int | None = Field(default=None, description="members.id or staff_users.id")
    recipient: EmailStr | None = Field(default=None, description="an institution's mailbox")
    recipient_name: str = ""
    context: dict[str, Any] = Field(
        default_factory=dict, description="template facts: ids, amounts, dates; no personal data"
    )

    @model_validator(mode="after")
    def _one_recipient(self) -> NotificationRequest:
        by_id = self.recipient_kind is not None and self.recipient_id is not None
        if by_id == (self.recipient is not None) or (self.recipient_kind is None) != (
            self.recipient_id is None
        ):
            raise ValueError("name the recipient by recipient_kind and recipient_id, or a mailbox")
        return self


class NotificationResult(BaseModel):
    notification_id: int | None = Field(description="None when skipped")
    status: Literal["sent", "stored", "duplicate", "skipped"] = Field(
        description="skipped: the recipient has no e-mail address (or is no longer active staff)"
    )
    transport: str


class StaffRecipientsQuery(BaseModel):
    """Active staff holding any of `roles` who have an e-mail address."""

    roles: list[str]


class StaffRecipients(BaseModel):
    user_ids: list[int] = Field(description="staff_users.id, ascending")


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
