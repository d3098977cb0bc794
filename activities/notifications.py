"""Notifications: render a versioned Jinja2 template and deliver it once per (process, template,
recipient), through SendGrid or the Postgres outbox.

Workflows name a person by kind and id; the name and address are read here (activities/recipients)
and stay in Postgres: they are never an activity's input or result. A recipient without an
address is `skipped`, not an error: the process goes on.

Exactly once: the `notifications` row is the idempotency record. A send claims it with a row lock
and holds the lock while the transport runs, so a concurrent duplicate waits and then finds it
`sent`; a retry after a failed attempt finds it `pending` and tries again. The one window left is
SendGrid accepting a message and the worker dying before the commit: SendGrid has no idempotency
key, so the message carries our notification id in `custom_args` for de-duplication downstream.

Retries: 429 and 5xx propagate as retryable errors (429 honours Retry-After), so Temporal retries
with backoff; 400 and the other 4xx are the message's fault and fail at once, non-retryable.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import jinja2
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import as_application_error, transaction
from activities.recipients import Addressee, addressee, staff_ids
from activities.tables import Notification
from schemas.errors import BankflowError, ErrorCode
from schemas.notifications import (
    NotificationRequest,
    NotificationResult,
    StaffRecipients,
    StaffRecipientsQuery,
)
from schemas.settings import Settings

TEMPLATES = Path(__file__).parent / "templates"
# Statuses that mean "delivered or kept": a repeat of the send is a duplicate.
DONE = frozenset({"sent", "stored"})
RETRYABLE_STATUSES = frozenset({429}) | frozenset(range(500, 600))


def template_environment(root: Path = TEMPLATES) -> jinja2.Environment:
    """HTML templates autoescape; a variable the caller forgot is an error, never a blank."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(root),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def render(env: jinja2.Environment, req: NotificationRequest, to: Addressee) -> Rendered:
    """`<template>.subject.j2`, `.txt.j2` and `.html.j2`; a missing file or variable is the
    caller's bug and fails the send for good."""
    context = {**req.context, "recipient_name": to.name or to.email}
    try:
        parts = [
            env.get_template(f"{req.template}.{part}.j2").render(context)
            for part in ("subject", "txt", "html")
        ]
    except (jinja2.TemplateNotFound, jinja2.UndefinedError) as exc:
        raise BankflowError(
            ErrorCode.NOTIFICATION_REJECTED, f"template {req.template!r}: {exc}"
        ) from exc
    return Rendered(subject=" ".join(parts[0].split()), text=parts[1], html=parts[2])


def sendgrid_message(
    settings: Settings,
    req: NotificationRequest,
    to: Addressee,
    rendered: Rendered,
    notification_id: int,
) -> dict[str, Any]:
    """The v3 /mail/send body."""
    recipient: dict[str, str] = {"email": to.email}
    if to.name:
        recipient["name"] = to.name
    return {
        "personalizations": [{"to": [recipient]}],
        "from": {
            "email": settings.notification_from_email,
            "name": settings.notification_from_name,
        },
        "subject": rendered.subject,
        "content": [
            {"type": "text/plain", "value": rendered.text},
            {"type": "text/html", "value": rendered.html},
        ],
        "custom_args": {
            "notification_id": str(notification_id),
            "process_id": req.process_id,
            "template": req.template,
        },
    }


def _post_to_sendgrid(settings: Settings, message: dict[str, Any]) -> str | None:
    """Blocking (urllib underneath): runs in a worker thread. Returns SendGrid's message id."""
    client = SendGridAPIClient(
        api_key=settings.sendgrid_api_key.get_secret_value(), host=settings.sendgrid_api_host
    )
    client.client.timeout = settings.sendgrid_timeout.total_seconds()
    response = client.send(message)
    headers = getattr(response, "headers", None)
    return headers.get("X-Message-Id") if headers is not None else None


def transport_failure(exc: HTTPError) -> Exception:
    """SendGrid's refusal as the error Temporal should see: retryable or not."""
    status = int(exc.status_code)
    body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else str(exc.body)
    if status in RETRYABLE_STATUSES:
        retry_after = (exc.headers or {}).get("Retry-After") if status == 429 else None
        return ApplicationError(
            f"SendGrid answered {status}; will retry",
            type="SendGridUnavailable",
            next_retry_delay=timedelta(seconds=int(retry_after))
            if retry_after and retry_after.isdigit()
            else None,
        )
    return BankflowError(ErrorCode.NOTIFICATION_REJECTED, f"SendGrid refused ({status}): {body}")


class NotificationActivities:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.templates = template_environment()

    @activity.defn(name="send_notification")
    async def send_notification(self, req: NotificationRequest) -> NotificationResult:
        """Render and deliver once; a repeat answers `duplicate` with the first row's id."""
        transport = self.settings.notification_transport
        to = await transaction(self.sessions, lambda s: addressee(s, req))
        if to is None:
            return NotificationResult(notification_id=None, status="skipped", transport=transport)
        try:
            rendered = render(self.templates, req, to)
        except BankflowError as exc:
            raise as_application_error(exc) from exc
        # Shielded: if this attempt times out or is cancelled while SendGrid is answering, the
        # send still records itself, and the retry (waiting on the row lock) sees it as sent.
        delivery = asyncio.create_task(
            transaction(self.sessions, lambda s: self._deliver(s, req, to, rendered))
        )
        return await asyncio.shield(delivery)

    @activity.defn(name="notification_staff_recipients")
    async def staff_recipients(self, query: StaffRecipientsQuery) -> StaffRecipients:
        """Ids of the active staff holding any of the roles who can be e-mailed."""
        ids = await transaction(self.sessions, lambda s: staff_ids(s, query.roles))
        return StaffRecipients(user_ids=ids)

    async def _deliver(
        self, session: AsyncSession, req: NotificationRequest, to: Addressee, rendered: Rendered
    ) -> NotificationResult:
        transport = self.settings.notification_transport
        await session.execute(
            insert(Notification)
            .values(
                process_id=req.process_id,
                template=req.template,
                recipient=to.email,
                recipient_name=to.name,
                transport=transport,
            )
            .on_conflict_do_nothing(constraint="uq_notifications_send_key")
        )
        # The lock serialises concurrent duplicates across the transport call below.
        row = await session.scalar(
            select(Notification)
            .where(
                Notification.process_id == req.process_id,
                Notification.template == req.template,
                Notification.recipient == to.email,
            )
            .with_for_update()
        )
        assert row is not None
        if row.status in DONE:
            return NotificationResult(
                notification_id=row.id, status="duplicate", transport=row.transport
            )
        values: dict[str, Any] = {
            "subject": rendered.subject,
            "body_text": rendered.text,
            "body_html": rendered.html,
            "transport": transport,
            "attempts": row.attempts + 1,
        }
        if transport == "outbox":
            values["status"] = "stored"
        else:
            message = sendgrid_message(self.settings, req, to, rendered, row.id)
            try:
                message_id = await asyncio.to_thread(_post_to_sendgrid, self.settings, message)
            except HTTPError as exc:
                raise transport_failure(exc) from exc
            values |= {"status": "sent", "sent_at": func.now(), "provider_message_id": message_id}
        await session.execute(update(Notification).where(Notification.id == row.id).values(values))
        return NotificationResult(
            notification_id=row.id, status=values["status"], transport=transport
        )

    def all(self) -> list[Any]:
        return [self.send_notification, self.staff_recipients]
