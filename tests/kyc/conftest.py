"""KYC and notification test harness: a local HTTP server playing SendGrid's v3 /mail/send."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from activities.accounts import create_member
from activities.db import in_transaction
from activities.kyc import store_document
from activities.tables import Member
from schemas.kyc import DocumentMeta, KycInput, KycPolicy
from schemas.members import MemberCreate
from schemas.settings import Settings
from tests.api.conftest import api_app, api_settings, idem, staff
from tests.conftest import BRANCH, Sessions
from workflows.kyc_review import KycReviewWorkflow

__all__ = ["api_app", "api_settings", "idem", "staff"]


@dataclass
class SendGridRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeSendGrid:
    """Answers each POST with the next scripted status (then 202), and records every request."""

    url: str = ""
    requests: list[SendGridRequest] = field(default_factory=list)
    script: list[int] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_status(self) -> int:
        with self.lock:
            return self.script.pop(0) if self.script else 202

    def next_delay(self) -> float:
        with self.lock:
            return self.delays.pop(0) if self.delays else 0.0

    @property
    def accepted(self) -> list[SendGridRequest]:
        """Requests answered 202: the messages SendGrid would deliver."""
        return [r for r in self.requests if r.headers.get("x-fake-status") == "202"]


def _handler(fake: FakeSendGrid) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            status = fake.next_status()
            time.sleep(fake.next_delay())  # a slow provider: the activity times out meanwhile
            headers = {k.lower(): v for k, v in self.headers.items()}
            headers["x-fake-status"] = str(status)
            with fake.lock:
                fake.requests.append(SendGridRequest(self.path, headers, body))
            self.send_response(status)
            if status == 202:
                self.send_header("X-Message-Id", f"fake-{len(fake.requests)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            payload = json.dumps({"errors": [{"message": f"scripted {status}"}]}).encode()
            if status == 429:
                self.send_header("Retry-After", "1")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            return

    return Handler


@pytest.fixture
def sendgrid() -> Iterator[FakeSendGrid]:
    fake = FakeSendGrid()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


# --- KYC helpers -----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def institution(chart: dict[str, int]) -> dict[str, int]:
    """Every KYC test needs the HQ branch and the chart (a savings account opens on approval)."""
    return chart


PNG = b"\x89PNG\r\n\x1a\n"
PDF = b"%PDF-1.7\n"
SUBMITTER_ID = 7001


def file_bytes(magic: bytes = PNG) -> bytes:
    """A small file of the given type, unique so each upload has its own sha256."""
    return magic + uuid.uuid4().bytes * 8


def far_future() -> date:
    return date.today() + timedelta(days=3 * 365)


async def new_member(
    sessions: Sessions,
    *,
    first: str = "Test",
    last: str | None = None,
    born: date = date(1990, 1, 1),
    email: str | None = "member@example.org",
) -> Member:
    async def work(session: AsyncSession) -> Member:
        return await create_member(
            session,
            MemberCreate(
                first_name=first,
                last_name=last or f"Member{uuid.uuid4().hex[:8]}",
                date_of_birth=born,
                email=email,
                branch_code=BRANCH,
            ),
        )

    return await in_transaction(sessions, work)


async def upload(sessions: Sessions, member: Member, magic: bytes = PNG, **meta: Any) -> None:
    doc = DocumentMeta(**meta)
    await in_transaction(
        sessions,
        lambda s: store_document(
            s, member.member_number, doc, file_bytes(magic), max_bytes=10**7, uploaded_by="t"
        ),
    )


async def complete_documents(
    sessions: Sessions, member: Member, *, passport: str | None = None, expiry: date | None = None
) -> None:
    """A full, valid set: passport, proof of address, photo."""
    await upload(
        sessions,
        member,
        doc_type="passport",
        number=passport or f"P{uuid.uuid4().int % 10**7:07d}",
        issuing_country="NG",
        issue_date=date(2020, 1, 1),
        expiry_date=expiry or far_future(),
    )
    await upload(sessions, member, PDF, doc_type="proof_of_address")
    await upload(sessions, member, doc_type="photo")


def policy(settings: Settings, **overrides: Any) -> KycPolicy:
    values: dict[str, Any] = {
        "required_documents": settings.kyc_required_documents,
        "low_risk_routing": settings.kyc_low_risk_routing,
        "reminder_after": settings.kyc_reminder_after,
        "escalate_after": settings.kyc_escalate_after,
        "supervisor_role": settings.kyc_supervisor_role,
        "member_response_timeout": settings.kyc_member_response_timeout,
        "watchlist_hit_score": settings.kyc_watchlist_hit_score,
        "watchlist_similar_score": settings.kyc_watchlist_similar_score,
        "account_currency": settings.kyc_account_currency,
    }
    return KycPolicy(**{**values, **overrides})


def kyc_input(member: Member, pol: KycPolicy) -> KycInput:
    return KycInput(
        case_number=f"{member.member_number}-1",
        member_id=member.id,
        member_number=member.member_number,
        branch=BRANCH,
        submitted_by_id=SUBMITTER_ID,
        submitted_by="teller1",
        policy=pol,
    )


async def start_case(client: Client, queue: str, inp: KycInput) -> Any:
    return await client.start_workflow(
        KycReviewWorkflow.run, inp, id=f"kyc-{inp.member_number}", task_queue=queue
    )
