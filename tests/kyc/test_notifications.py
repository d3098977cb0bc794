"""send_notification through a real worker, real Postgres and a local server playing SendGrid."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.accounts import create_member
from activities.db import in_transaction
from activities.notifications import NotificationActivities
from activities.staff import create_staff_user
from activities.tables import Notification
from schemas.members import MemberCreate
from schemas.notifications import NotificationRequest, NotificationResult, StaffRecipientsQuery
from schemas.settings import Settings
from tests.api.conftest import Staff, make_client
from tests.kyc.conftest import FakeSendGrid
from workflows.common import NOTIFY_ACTIVITY

Sessions = async_sessionmaker[AsyncSession]


@workflow.defn(name="NotifyProbe")
class NotifyProbe:
    """Calls send_notification like a process does, with a short first retry for the test."""

    @workflow.run
    async def run(self, req: NotificationRequest) -> NotificationResult:
        options: dict[str, Any] = {
            **NOTIFY_ACTIVITY,
            "start_to_close_timeout": timedelta(seconds=2),
            "retry_policy": RetryPolicy(initial_interval=timedelta(milliseconds=100)),
        }
        result: NotificationResult = await workflow.execute_activity(
            "send_notification", req, result_type=NotificationResult, **options
        )
        return result


@asynccontextmanager
async def run_worker(
    client: Client, settings: Settings, sessions: Sessions, queue: str
) -> AsyncIterator[None]:
    worker = Worker(
        client,
        task_queue=queue,
        workflows=[NotifyProbe],
        activities=NotificationActivities(settings, sessions).all(),
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    async with worker:
        yield


@pytest.fixture
async def via_sendgrid(
    temporal_client: Client,
    settings: Settings,
    sessions: Sessions,
    task_queue: str,
    sendgrid: FakeSendGrid,
) -> AsyncIterator[str]:
    configured = settings.model_copy(
        update={
            "notification_transport": "sendgrid",
            "sendgrid_api_key": SecretStr("SG.test-key"),
            "sendgrid_api_host": sendgrid.url,
            "notification_from_email": "kyc@bank.example.org",
        }
    )
    async with run_worker(temporal_client, configured, sessions, task_queue):
        yield task_queue


@pytest.fixture
async def via_outbox(
    temporal_client: Client, settings: Settings, sessions: Sessions, task_queue: str
) -> AsyncIterator[str]:
    async with run_worker(temporal_client, settings, sessions, task_queue):
        yield task_queue


def request(**overrides: Any) -> NotificationRequest:
    values: dict[str, Any] = {
        "process_id": f"kyc-test-{uuid.uuid4().hex[:8]}",
        "template": "kyc_rejected",
        "recipient": "ama@example.org",
        "recipient_name": "Ama <b>Mensah</b>",
        "context": {"case_number": "M0000001-1", "reason": "document forged", "institution": "Ko"},
    }
    return NotificationRequest(**{**values, **overrides})


async def notify(client: Client, queue: str, req: NotificationRequest) -> NotificationResult:
    return await client.execute_workflow(
        NotifyProbe.run, req, id=f"probe-{uuid.uuid4().hex}", task_queue=queue
    )


async def rows(sessions: Sessions, process_id: str) -> list[Notification]:
    async with sessions() as session:
        found = await session.scalars(
            select(Notification).where(Notification.process_id == process_id)
        )
        return list(found)


async def test_sendgrid_payload_and_retries_send_exactly_once(
    temporal_client: Client, via_sendgrid: str, sendgrid: FakeSendGrid, sessions: Sessions
) -> None:
    sendgrid.script = [500, 429, 503]
    req = request()
    result = await notify(temporal_client, via_sendgrid, req)
    assert result.status == "sent" and result.transport == "sendgrid"
    assert [r.headers["x-fake-status"] for r in sendgrid.requests] == ["500", "429", "503", "202"]
    assert len(sendgrid.accepted) == 1
    sent = sendgrid.accepted[0]
    assert sent.path == "/v3/mail/send"
    assert sent.headers["authorization"] == "Bearer SG.test-key"
    body = sent.body
    assert body["personalizations"] == [
        {"to": [{"email": "ama@example.org", "name": "Ama <b>Mensah</b>"}]}
    ]
    assert body["from"] == {"email": "kyc@bank.example.org", "name": "bankflow"}
    assert body["subject"] == "We could not verify your membership details (M0000001-1)"
    text, html = body["content"]
    assert text["type"] == "text/plain" and "Dear Ama <b>Mensah</b>," in text["value"]
    assert html["type"] == "text/html" and "Dear Ama &lt;b&gt;Mensah&lt;/b&gt;," in html["value"]
    assert "document forged" in text["value"]
    assert body["custom_args"] == {
        "notification_id": str(result.notification_id),
        "process_id": req.process_id,
        "template": "kyc_rejected",
    }

    again = await notify(temporal_client, via_sendgrid, req)
    assert again.status == "duplicate" and again.notification_id == result.notification_id
    assert len(sendgrid.requests) == 4
    (row,) = await rows(sessions, req.process_id)
    assert row.status == "sent" and row.provider_message_id == "fake-4" and row.attempts == 1


async def test_a_400_is_not_retried(
    temporal_client: Client, via_sendgrid: str, sendgrid: FakeSendGrid, sessions: Sessions
) -> None:
    sendgrid.script = [400]
    req = request()
    with pytest.raises(WorkflowFailureError) as err:
        await notify(temporal_client, via_sendgrid, req)
    cause = err.value.cause
    assert isinstance(cause, ActivityError) and isinstance(cause.cause, ApplicationError)
    assert cause.cause.type == "NotificationRejected" and "400" in cause.cause.message
    assert len(sendgrid.requests) == 1 and not sendgrid.accepted
    assert not await rows(sessions, req.process_id)  # refused: nothing recorded as delivered


async def test_a_timed_out_attempt_that_reached_sendgrid_is_not_sent_again(
    temporal_client: Client, via_sendgrid: str, sendgrid: FakeSendGrid
) -> None:
    # The first answer comes after the attempt's 2 s timeout: Temporal retries while the first
    # attempt is still recording its send. The retry waits for it and finds the message sent.
    sendgrid.delays = [3.0]
    result = await notify(temporal_client, via_sendgrid, request())
    assert result.status == "duplicate"
    assert len(sendgrid.requests) == 1 and len(sendgrid.accepted) == 1


async def test_concurrent_duplicates_send_once(
    temporal_client: Client, via_sendgrid: str, sendgrid: FakeSendGrid
) -> None:
    req = request()
    results = await asyncio.gather(*(notify(temporal_client, via_sendgrid, req) for _ in range(4)))
    assert sorted(r.status for r in results) == ["duplicate"] * 3 + ["sent"]
    assert len(sendgrid.accepted) == 1


async def test_missing_template_variable_fails_without_sending(
    temporal_client: Client, via_sendgrid: str, sendgrid: FakeSendGrid, sessions: Sessions
) -> None:
    req = request(context={"case_number": "M0000001-1"})  # no reason, no institution
    with pytest.raises(WorkflowFailureError) as err:
        await notify(temporal_client, via_sendgrid, req)
    cause = err.value.cause
    assert isinstance(cause, ActivityError) and isinstance(cause.cause, ApplicationError)
    assert cause.cause.type == "NotificationRejected" and "undefined" in cause.cause.message
    assert not sendgrid.requests and not await rows(sessions, req.process_id)


async def test_outbox_stores_once_and_lists_it(
    temporal_client: Client,
    via_outbox: str,
    sessions: Sessions,
    api_app: FastAPI,
    staff: dict[str, Staff],
) -> None:
    req = request(
        template="kyc_approved",
        context={"case_number": "C1", "tier": 1, "account_number": "SV1", "institution": "Ko"},
    )
    first = await notify(temporal_client, via_outbox, req)
    second = await notify(temporal_client, via_outbox, req)
    assert (first.status, second.status) == ("stored", "duplicate")
    (row,) = await rows(sessions, req.process_id)
    assert row.transport == "outbox" and row.status == "stored"
    assert "tier 1" in row.body_text and "<strong>SV1</strong>" in row.body_html

    async with make_client(api_app) as api:
        url = f"/v1/notifications?process_id={req.process_id}"
        listed = await api.get(url, headers=staff["ops"].headers)
        assert listed.status_code == 200, listed.text
        (item,) = listed.json()["items"]
        assert item["id"] == first.notification_id and item["status"] == "stored"
        assert item["subject"].startswith("Your membership details are verified")
        refused = await api.get(url, headers=staff["teller"].headers)
        assert refused.status_code == 403 and refused.json()["error"] == "Forbidden"


async def new_member(sessions: Sessions, email: str | None) -> int:
    async def work(session: AsyncSession) -> int:
        member = await create_member(
            session,
            MemberCreate(
                first_name="Efua",
                last_name=f"Boateng{uuid.uuid4().hex[:4]}",
                date_of_birth=date(1988, 3, 9),
                email=email,
                branch_code="HQ",
            ),
        )
        return member.id

    return await in_transaction(sessions, work)


async def test_a_member_named_by_id_is_addressed_from_postgres(
    temporal_client: Client, via_outbox: str, sessions: Sessions, chart: dict[str, int]
) -> None:
    address = f"efua-{uuid.uuid4().hex[:6]}@example.org"
    member_id = await new_member(sessions, address)
    req = request(
        recipient=None, recipient_name="", recipient_kind="member", recipient_id=member_id
    )
    first = await notify(temporal_client, via_outbox, req)
    again = await notify(temporal_client, via_outbox, req)
    assert (first.status, again.status) == ("stored", "duplicate")
    (row,) = await rows(sessions, req.process_id)
    assert row.recipient == address and row.recipient_name.startswith("Efua Boateng")
    assert "Dear Efua Boateng" in row.body_text


async def test_a_member_without_an_address_is_skipped(
    temporal_client: Client, via_outbox: str, sessions: Sessions, chart: dict[str, int]
) -> None:
    member_id = await new_member(sessions, None)
    req = request(
        recipient=None, recipient_name="", recipient_kind="member", recipient_id=member_id
    )
    result = await notify(temporal_client, via_outbox, req)
    assert result.status == "skipped" and result.notification_id is None
    assert await rows(sessions, req.process_id) == []


async def test_staff_by_id_and_the_staff_recipients_of_a_role(
    temporal_client: Client, via_outbox: str, sessions: Sessions, settings: Settings
) -> None:
    role = "credit_committee"

    async def work(session: AsyncSession) -> tuple[int, int, int]:
        made = []
        for email, active in (("cc1@bank.example.org", True), (None, True), ("x@b.org", False)):
            user = await create_staff_user(
                session,
                username=f"cc-{uuid.uuid4().hex[:8]}",
                full_name="Committee Member",
                password="committee-pass-1234",
                roles=[role],
                email=email,
            )
            user.is_active = active
            made.append(user.id)
        return made[0], made[1], made[2]

    reachable, no_address, disabled = await in_transaction(sessions, work)
    activities = NotificationActivities(settings, sessions)
    found = await activities.staff_recipients(StaffRecipientsQuery(roles=[role]))
    assert reachable in found.user_ids
    assert no_address not in found.user_ids and disabled not in found.user_ids
    req = request(recipient=None, recipient_name="", recipient_kind="staff", recipient_id=reachable)
    assert (await notify(temporal_client, via_outbox, req)).status == "stored"
    (row,) = await rows(sessions, req.process_id)
    assert row.recipient == "cc1@bank.example.org"
    off = request(recipient=None, recipient_name="", recipient_kind="staff", recipient_id=disabled)
    assert (await notify(temporal_client, via_outbox, off)).status == "skipped"


@pytest.mark.parametrize(
    "fields",
    [
        {"recipient": None, "recipient_kind": None},
        {"recipient_kind": "member", "recipient_id": 1},
        {"recipient": None, "recipient_kind": "member", "recipient_id": None},
    ],
)
def test_a_request_names_exactly_one_recipient(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="recipient_kind and recipient_id, or a mailbox"):
        request(**fields)
