"""KYC through the API on the real stack: uploads, submit, decisions by role, inbox, resubmit."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import date, timedelta
from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import func, select
from temporalio.client import Client

from activities.tables import KycDocument, Member
from api.app import create_app
from schemas.settings import Settings
from tests.api.conftest import Staff, make_client, new_staff
from tests.conftest import Sessions
from tests.kyc.conftest import PDF, PNG, file_bytes, new_member

Idem = Callable[[], dict[str, str]]
UPLOAD_LIMIT = 4096


@pytest.fixture
async def api(
    settings: Settings, temporal_client: Client, worker: str
) -> AsyncIterator[AsyncClient]:
    app = create_app(
        settings.model_copy(
            update={"interactive_task_queue": worker, "kyc_upload_max_bytes": UPLOAD_LIMIT}
        ),
        temporal_client=temporal_client,
    )
    async with app.router.lifespan_context(app), make_client(app) as client:
        yield client


async def upload(
    api: AsyncClient, who: Staff, member: str, content: bytes, name: str = "doc.png", **form: Any
) -> Response:
    return await api.post(
        f"/v1/members/{member}/kyc/documents",
        files={"file": (name, content, "application/octet-stream")},
        data={k: str(v) for k, v in form.items()},
        headers=who.headers,
    )


async def full_set(api: AsyncClient, who: Staff, member: str, expiry: date) -> None:
    digits = f"{uuid.uuid4().int % 10**7:07d}"
    passport = await upload(
        api,
        who,
        member,
        file_bytes(PNG),
        doc_type="passport",
        number=f"bd {digits[:2]}-{digits[2:4]} {digits[4:]}",
        issuing_country="bd",
        issue_date="2021-02-03",
        expiry_date=expiry.isoformat(),
    )
    assert passport.status_code == 201, passport.text
    assert passport.json()["number"] == f"BD{digits}"
    assert passport.json()["content_type"] == "image/png"
    for doc_type, magic in (("proof_of_address", PDF), ("photo", PNG)):
        response = await upload(api, who, member, file_bytes(magic), doc_type=doc_type)
        assert response.status_code == 201, response.text


async def documents(sessions: Sessions, member_id: int) -> int:
    async with sessions() as session:
        count = await session.scalar(
            select(func.count()).select_from(KycDocument).where(KycDocument.member_id == member_id)
        )
        return int(count or 0)


async def test_bad_documents_are_refused_and_store_nothing(
    api: AsyncClient, staff: dict[str, Staff], sessions: Sessions
) -> None:
    member = await new_member(sessions)
    teller = staff["teller"]
    number = member.member_number
    cases: list[tuple[Response, int, str]] = [
        (
            await upload(api, teller, number, b"just text", "id.pdf", doc_type="proof_of_address"),
            422,
            "DocumentRejected",
        ),
        (
            await upload(api, teller, number, PNG + b"x" * UPLOAD_LIMIT, doc_type="photo"),
            413,
            "DocumentTooLarge",
        ),
        (
            await upload(api, teller, number, file_bytes(PDF), "me.png", doc_type="photo"),
            422,
            "DocumentRejected",
        ),
        (await upload(api, teller, number, b"", doc_type="photo"), 422, "DocumentRejected"),
        (
            await upload(api, teller, number, file_bytes(), doc_type="passport"),
            422,
            "ValidationError",
        ),
        (
            await upload(api, teller, number, file_bytes(), doc_type="selfie"),
            422,
            "ValidationError",
        ),
        (
            await upload(
                api,
                teller,
                number,
                file_bytes(),
                doc_type="national_id",
                number="1",
                issuing_country="NG",
                issue_date="2020-01-01",
                expiry_date="2019-01-01",
            ),
            422,
            "ValidationError",
        ),
        (await upload(api, teller, "M9999999", file_bytes(), doc_type="photo"), 404, "NotFound"),
        (
            await upload(api, staff["finance"], number, file_bytes(), doc_type="photo"),
            403,
            "Forbidden",
        ),
    ]
    for response, status, code in cases:
        assert (response.status_code, response.json()["error"]) == (status, code), response.text
    assert await documents(sessions, member.id) == 0

    same = file_bytes()
    assert (await upload(api, teller, number, same, doc_type="photo")).status_code == 201
    again = await upload(api, teller, number, same, doc_type="photo")
    assert again.status_code == 409 and again.json()["error"] == "Duplicate"
    assert await documents(sessions, member.id) == 1


async def test_review_through_the_api(
    api: AsyncClient,
    staff: dict[str, Staff],
    sessions: Sessions,
    settings: Settings,
    idem: Idem,
) -> None:
    member = await new_member(sessions)
    number = member.member_number
    # A teller who is also a KYC reviewer submits, so the API lets them try to decide.
    submitter = await new_staff(sessions, settings, "teller", "kyc_reviewer")
    await full_set(api, submitter, number, date.today() + timedelta(days=45))
    submitted = await api.post(
        f"/v1/members/{number}/kyc/submit", headers={**submitter.headers, **idem()}
    )
    assert submitted.status_code == 202, submitted.text
    case = submitted.json()
    assert case["stage"] == "awaiting_review" and case["risk"] == "medium"
    assert submitted.headers["Location"] == f"/v1/kyc/{case['case_number']}"
    assert {c["name"]: c["passed"] for c in case["checks"]}["id_format:passport"]

    twice = await api.post(
        f"/v1/members/{number}/kyc/submit", headers={**submitter.headers, **idem()}
    )
    assert twice.status_code == 409 and twice.json()["error"] == "Duplicate"

    url = f"/v1/kyc/{case['case_number']}"
    got = await api.get(url, headers=staff["teller"].headers)
    assert got.status_code == 200 and got.json()["pending_role"] == "kyc_reviewer"
    inbox = await api.get("/v1/kyc?stage=awaiting_review", headers=submitter.headers)
    assert inbox.status_code == 200  # visibility is eventually consistent: not asserted on case
    assert (await api.get("/v1/kyc", headers=staff["teller"].headers)).status_code == 403

    decide = f"{url}/decisions"
    approve = {"action": "approve"}
    by_teller = await api.post(decide, json=approve, headers=staff["teller"].headers)
    assert by_teller.status_code == 403 and by_teller.json()["error"] == "Forbidden"
    own = await api.post(decide, json=approve, headers=submitter.headers)
    assert own.status_code == 403 and own.json()["error"] == "FourEyesViolation"
    compliance = await api.post(decide, json=approve, headers=staff["compliance_officer"].headers)
    assert compliance.status_code == 403 and compliance.json()["error"] == "Forbidden"
    bad = await api.post(decide, json={"action": "reject"}, headers=submitter.headers)
    assert bad.status_code == 422 and bad.json()["error"] == "ValidationError"

    reviewer = await new_staff(sessions, settings, "kyc_reviewer")
    done = await api.post(decide, json=approve, headers=reviewer.headers)
    assert done.status_code == 200, done.text
    assert done.json()["stage"] == "approved" and done.json()["account_number"]
    again = await api.post(decide, json=approve, headers=reviewer.headers)
    assert again.status_code == 409 and again.json()["error"] == "NotAwaitingDecision"

    view = await api.get(f"/v1/members/{number}", headers=staff["teller"].headers)
    assert (view.json()["kyc_status"], view.json()["kyc_tier"]) == ("verified", 1)
    mail = await api.get(
        f"/v1/notifications?process_id=kyc-{case['case_number']}-outcome",
        headers=staff["ops"].headers,
    )
    assert [m["template"] for m in mail.json()["items"]] == ["kyc_approved"]
    assert (await api.get(url, headers=staff["teller"].headers)).json()["stage"] == "approved"


async def test_member_resubmits_through_the_api(
    api: AsyncClient, staff: dict[str, Staff], sessions: Sessions, idem: Idem
) -> None:
    member = await new_member(sessions)
    number = member.member_number
    teller = staff["teller"]
    assert (await upload(api, teller, number, file_bytes(), doc_type="photo")).status_code == 201
    submitted = await api.post(
        f"/v1/members/{number}/kyc/submit", headers={**teller.headers, **idem()}
    )
    assert submitted.status_code == 202 and submitted.json()["stage"] == "awaiting_member"
    url = f"/v1/kyc/{submitted.json()['case_number']}"
    async with sessions() as session:
        assert (await session.get(Member, member.id)).kyc_status == "pending"  # type: ignore[union-attr]

    await full_set(api, teller, number, date.today() + timedelta(days=900))
    resubmitted = await api.post(f"{url}/resubmit", headers=teller.headers)
    assert resubmitted.status_code == 202, resubmitted.text
    while (state := (await api.get(url, headers=teller.headers)).json())["stage"] not in (  # noqa: ASYNC110
        "approved",
        "rejected",
    ):
        await asyncio.sleep(0.05)
    assert state["stage"] == "approved" and state["round"] == 2
    late = await api.post(f"{url}/resubmit", headers=teller.headers)
    assert late.status_code == 409


async def test_a_submission_retried_after_a_crash_answers_the_case_it_opened(
    api: AsyncClient, sessions: Sessions, settings: Settings, idem: Idem
) -> None:
    """The API died after opening the case, before keeping its answer: the retry with the same
    Idempotency-Key answers the case it opened (the Update's id comes from the key), not 409
    Duplicate; another key still finds the case open."""
    from tests.api.test_idempotency import leave_as_crashed

    member = await new_member(sessions)
    number = member.member_number
    submitter = await new_staff(sessions, settings, "teller")
    await full_set(api, submitter, number, date.today() + timedelta(days=45))
    headers = {**submitter.headers, **idem()}
    path = f"/v1/members/{number}/kyc/submit"
    first = await api.post(path, headers=headers)
    assert first.status_code == 202, first.text
    assert await leave_as_crashed(sessions, submitter.id, headers["Idempotency-Key"], 0) == 1

    again = await api.post(path, headers=headers)
    assert again.status_code == 202, again.text
    assert again.json()["case_number"] == first.json()["case_number"]
    assert again.headers["Location"] == first.headers["Location"]
    other = await api.post(path, headers={**submitter.headers, **idem()})
    assert other.status_code == 409 and other.json()["error"] == "Duplicate"
