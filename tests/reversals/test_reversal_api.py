"""Reversals and period close through the API, a real Temporal dev server, the real worker and
Postgres: roles at the door, the workflow's refusals as API errors, a race of two requests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import date

from httpx import AsyncClient, Response
from sqlalchemy import func, select, text
from temporalio.client import Client

from activities.accounts import create_member, open_account
from activities.db import in_transaction
from activities.ledger.chart import CASH
from activities.ledger.verify import verify_ledger
from activities.tables import Journal, LedgerAccount
from schemas.members import AccountOpen, MemberCreate
from schemas.settings import Settings
from tests.api.conftest import Staff, new_staff
from tests.conftest import BRANCH, Factory, Sessions
from tests.reversals.conftest import balances, post

Idem = Callable[[], dict[str, str]]
BODY = {"reason_code": "duplicate", "reason": "the teller keyed the deposit twice"}


def path(journal_id: str, tail: str = "") -> str:
    return f"/v1/journals/{journal_id}/reversals{tail}"


async def request(api: AsyncClient, who: Staff, journal_id: str, idem: Idem) -> Response:
    return await api.post(path(journal_id), json=BODY, headers={**who.headers, **idem()})


async def decide(api: AsyncClient, who: Staff, journal_id: str, **body: object) -> Response:
    return await api.post(path(journal_id, "/decisions"), json=body, headers=who.headers)


async def member_account(sessions: Sessions, email: str) -> LedgerAccount:
    async def work(s):  # type: ignore[no-untyped-def]
        member = await create_member(
            s,
            MemberCreate(
                first_name="Nia", last_name="Mensah", date_of_birth=date(1990, 5, 17),
                email=email, branch_code=BRANCH,
            ),
        )  # fmt: skip
        return await open_account(s, member, AccountOpen(currency="USD"))

    account: LedgerAccount = await in_transaction(sessions, work)
    return account


async def test_two_requests_meet_one_case_and_post_one_reversal(
    api: AsyncClient,
    temporal_client: Client,
    staff: dict[str, Staff],
    factory: Factory,
    idem: Idem,
    sessions: Sessions,
    api_settings: Settings,
) -> None:
    email = f"nia-{uuid.uuid4().hex[:6]}@example.org"
    acc = await member_account(sessions, email)
    original = await post(sessions, "deposit", (factory.gl(CASH.number), acc.id, 150_00))
    teller2 = await new_staff(sessions, api_settings, "teller")
    first, second = await asyncio.gather(
        request(api, staff["teller"], original.journal_id, idem),
        request(api, teller2, original.journal_id, idem),
    )
    assert first.status_code == second.status_code == 202, (first.text, second.text)
    assert first.json()["reversal_id"] == second.json()["reversal_id"]
    case = first.json()
    assert case["stage"] == "awaiting_approval" and case["amount"] == "150.00"
    assert case["held"][0]["amount_minor"] == 150_00 and case["approvers_needed"] == 1
    requester = next(
        who for who in (staff["teller"], teller2) if who.username == case["requested_by"]
    )

    assert (await decide(api, requester, original.journal_id, approve=True)).status_code == 403
    done = await decide(api, staff["branch_manager"], original.journal_id, approve=True)
    assert done.status_code == 200, done.text
    assert done.json()["reversal_journal_id"] == f"{case['reversal_id']}:reverse"
    final = await temporal_client.get_workflow_handle(case["reversal_id"]).result()
    assert final["stage"] == "completed" and final["notified"] == 1
    again = await decide(api, staff["finance"], original.journal_id, approve=True)
    assert again.status_code == 409 and again.json()["error"] == "NotAwaitingDecision"
    repeat = await request(api, teller2, original.journal_id, idem)
    assert repeat.status_code == 409 and repeat.json()["error"] == "AlreadyReversed"

    async with sessions() as s:
        reversals = await s.scalar(
            select(func.count())
            .select_from(Journal)
            .where(Journal.reverses_journal_id == original.journal_id)
        )
        sent = (
            await s.execute(
                text("SELECT template, recipient FROM notifications WHERE process_id = :p"),
                {"p": case["reversal_id"]},
            )
        ).all()
    assert reversals == 1 and await balances(factory, acc.id) == (0, 0)
    assert [tuple(r) for r in sent] == [("reversal_completed", email)]
    journal = await api.get(f"/v1/journals/{original.journal_id}", headers=staff["finance"].headers)
    assert journal.json()["reversed_by_journal_id"] == done.json()["reversal_journal_id"]
    got = await api.get(path(original.journal_id), headers=staff["teller"].headers)
    assert got.status_code == 200 and got.json()["stage"] == "completed"
    async with sessions() as s:
        assert (await verify_ledger(s)).ok


async def test_roles_are_checked_at_the_door_and_by_the_workflow(
    api: AsyncClient, staff: dict[str, Staff], factory: Factory, idem: Idem, sessions: Sessions
) -> None:
    acc = await factory.savings_account()
    original = await post(sessions, "deposit", (factory.gl(CASH.number), acc.id, 40_00))
    ops = await request(api, staff["ops"], original.journal_id, idem)
    assert ops.status_code == 403 and ops.json()["error"] == "Forbidden"
    started = await request(api, staff["branch_manager"], original.journal_id, idem)
    assert started.status_code == 202
    own = await decide(api, staff["branch_manager"], original.journal_id, approve=True)
    assert own.status_code == 403 and own.json()["error"] == "FourEyesViolation"
    for who in ("teller", "admin", "compliance_officer"):
        refused = await decide(api, staff[who], original.journal_id, approve=True)
        assert refused.status_code == 403 and refused.json()["error"] == "Forbidden", who
    rejected = await decide(
        api, staff["finance"], original.journal_id, approve=False, reason="not a duplicate"
    )
    assert rejected.status_code == 200 and rejected.json()["stage"] == "rejected"
    assert await balances(factory, acc.id) == (40_00, 0)


async def test_bad_requests_start_nothing(
    api: AsyncClient, staff: dict[str, Staff], factory: Factory, idem: Idem, sessions: Sessions
) -> None:
    acc = await factory.savings_account()
    original = await post(sessions, "deposit", (factory.gl(CASH.number), acc.id, 5_00))
    teller = staff["teller"]
    missing = await request(api, teller, "no-such-journal", idem)
    assert missing.status_code == 404 and missing.json()["error"] == "JournalNotFound"
    loan = await post(sessions, "loan_repayment", (factory.gl(CASH.number), acc.id, 1_00))
    refused = await request(api, teller, loan.journal_id, idem)
    assert refused.status_code == 422 and refused.json()["error"] == "NotReversible"
    for body in ({"reason_code": "whim", "reason": "x"}, {"reason_code": "other"}, {}):
        bad = await api.post(
            path(original.journal_id), json=body, headers={**teller.headers, **idem()}
        )
        assert bad.status_code == 422 and bad.json()["error"] == "ValidationError"
    no_key = await api.post(path(original.journal_id), json=BODY, headers=teller.headers)
    assert no_key.status_code == 422 and "Idempotency-Key" in no_key.json()["detail"]
    none = await api.get(path(original.journal_id), headers=teller.headers)
    assert none.status_code == 404 and none.json()["error"] == "NotFound"


async def test_period_close_by_finance_refuses_reversals_dated_in_it(
    api: AsyncClient, staff: dict[str, Staff], factory: Factory, idem: Idem, sessions: Sessions
) -> None:
    acc = await factory.savings_account()
    old = await post(
        sessions, "deposit", (factory.gl(CASH.number), acc.id, 8_00), value_date=date(1996, 3, 9)
    )
    close = "/v1/ledger/periods/1996-03/close"
    teller = await api.post(close, headers=staff["teller"].headers)
    assert teller.status_code == 403
    first = await api.post(close, headers=staff["finance"].headers)
    assert first.status_code == 201 and first.json()["status"] == "closed"
    assert first.json()["closed_by"] == staff["finance"].username
    second = await api.post(close, headers=staff["finance"].headers)
    assert second.status_code == 200 and second.json() == first.json()
    this_month = f"/v1/ledger/periods/{date.today():%Y-%m}/close"
    current = await api.post(this_month, headers=staff["finance"].headers)
    assert current.status_code == 422 and current.json()["error"] == "PeriodNotEnded"
    bad = await api.post("/v1/ledger/periods/1996-13/close", headers=staff["finance"].headers)
    assert bad.status_code == 422 and bad.json()["error"] == "ValidationError"
    got = await api.get("/v1/ledger/periods/1996-03", headers=staff["ops"].headers)
    assert got.json()["status"] == "closed"
    listed = await api.get("/v1/ledger/periods", headers=staff["finance"].headers)
    assert "1996-03" in [p["period"] for p in listed.json()]

    refused = await request(api, staff["teller"], old.journal_id, idem)
    assert refused.status_code == 409 and refused.json()["error"] == "PeriodClosed"
    assert await balances(factory, acc.id) == (8_00, 0)
