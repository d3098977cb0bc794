"""The notifications table: the idempotency record of every message and the development outbox."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Integer, String, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from activities.tables.base import Base

NOTIFICATION_STATUSES = ("pending", "stored", "sent")


class Notification(Base):
    """One message to one recipient. (process_id, template, recipient) is unique: a retried or
    repeated send finds this row and never sends twice."""

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("process_id", "template", "recipient", name="uq_notifications_send_key"),
        CheckConstraint("status IN ('pending', 'stored', 'sent')", name="status_known"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    process_id: Mapped[str] = mapped_column(String(200))
    template: Mapped[str] = mapped_column(String(100))
    recipient: Mapped[str] = mapped_column(String(320))
    recipient_name: Mapped[str] = mapped_column(String(200), default="", server_default="")
    subject: Mapped[str] = mapped_column(Text, default="", server_default="")
    body_text: Mapped[str] = mapped_column(Text, default="", server_default="")
    body_html: Mapped[str] = mapped_column(Text, default="", server_default="")
    transport: Mapped[str] = mapped_column(String(16), doc="outbox or sendgrid")
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    provider_message_id: Mapped[str | None] = mapped_column(
        String(200), doc="SendGrid's X-Message-Id"
    )
    attempts: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0", doc="calls made to the transport"
    )
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column()
