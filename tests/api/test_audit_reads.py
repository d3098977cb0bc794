"""Reads of personal data are audited (who, which members, when, the outcome) and compliance
lists them with `GET /v1/audit?member=M…`, newest first, a page at a time."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.tables import AuditEntry, LedgerAccount, Member
from schemas.settings import Settings
from tests.api.conftest import Staff
from tests.api.test_members_accounts import member_body
from tests.conftest import Factory
from tests.loans.conftest import LoanKit

Idem = Callable[[], dict[str, str]]


async def member_of(sessions: async_sessionmaker[AsyncSession], account: LedgerAccount) -> str:
    async with sessions() as session:
        number = await session.scalar(
            select(Member.member_number).where(Member.id == account.member_id)
        )
    assert number is not None
    return number


async def last_entry(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.max(AuditEntry.id))) or 0)


async def trail(
    client: AsyncClient, who: Staff, member: str, after: int = 0
) -> list[dict[str, Any]]:
    """Every entry naming `member` (since entry `after`), newest first, two at a time; other
    tests' commands on the same member number (`M0000001`) came before."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"member": member, "limit": 2}
    while True:
        r = await client.get("/v1/audit", params=params, headers=who.headers)
        assert r.status_code == 200, r.text
        page = r.json()
        items += [item for item in page["items"] if item["id"] > after]
        if page["next_cursor"] is None or page["next_cursor"] <= after:
            return items
        params["before"] = page["next_cursor"]


async def test_reads_of_a_member_are_audited_and_listed_for_compliance(
    client: AsyncClient,
    staff: dict[str, Staff],
    factory: Factory,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    account = await factory.savings_account(funded_minor=10_00)
    member = await member_of(sessions, account)
    since = await last_entry(sessions)
    ops = staff["ops"]
    assert (await client.get(f"/v1/members/{member}", headers=ops.headers)).status_code == 200
    assert (await client.get(f"/v1/accounts/{account.code}", headers=ops.headers)).is_success
    statement = await client.get(f"/v1/accounts/{account.code}/statement", headers=ops.headers)
    assert statement.status_code == 200
    denied = await client.get(f"/v1/members/{member}", headers=staff["none"].headers)
    assert denied.status_code == 403

    entries = await trail(client, staff["compliance_officer"], member, since)
    assert [(e["action"], e["actor_username"], e["outcome"]) for e in entries] == [
        ("GET /v1/members/{member_number}", staff["none"].username, "Forbidden"),
        ("GET /v1/accounts/{number}/statement", ops.username, "ok"),
        ("GET /v1/accounts/{number}", ops.username, "ok"),
        ("GET /v1/members/{member_number}", ops.username, "ok"),
    ]
    assert all(e["member_numbers"] == [member] for e in entries)
    assert entries[-1]["resource"] == f"/v1/members/{member}"
    assert entries[-1]["client_address"] == "10.0.0.7"
    assert entries[0]["at"] >= entries[-1]["at"]

    # The compliance officer's own reads of the trail are audited too.
    again = await trail(client, staff["admin"], member, since)
    assert again[0]["action"] == "GET /v1/audit"
    assert again[0]["actor_username"] == staff["compliance_officer"].username


async def test_a_search_records_every_member_it_showed(
    client: AsyncClient,
    staff: dict[str, Staff],
    idem: Idem,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    since = await last_entry(sessions)
    family = f"Nyambura{uuid.uuid4().hex[:6]}"
    numbers = []
    for first in ("Wanjiku", "Kamau", "Njeri"):
        r = await client.post(
            "/v1/members",
            json=member_body(first_name=first, last_name=family),
            headers=staff["teller"].headers | idem(),
        )
        assert r.status_code == 201, r.text
        numbers.append(r.json()["member_number"])
    found = await client.get("/v1/members", params={"q": family}, headers=staff["ops"].headers)
    assert sorted(m["member_number"] for m in found.json()["items"]) == sorted(numbers)

    for number in numbers:
        entries = await trail(client, staff["compliance_officer"], number, since)
        search = entries[0]
        assert search["action"] == "GET /v1/members"
        assert search["resource"] == f"/v1/members?q={family}"
        assert search["member_numbers"] == sorted(numbers)
        # Registering is a command on no member's path: the search is all that names them.
        assert [e["action"] for e in entries] == ["GET /v1/members"]


async def test_a_loan_view_names_the_applicant_and_the_guarantors(
    client: AsyncClient,
    staff: dict[str, Staff],
    factory: Factory,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    kit = LoanKit(sessions, factory, settings)
    applicant, guarantor = await kit.member(), await kit.member()
    loan = await kit.register(
        staff["teller"], await kit.product(), applicant, "500.00", guarantors=[(guarantor, "100")]
    )
    since = await last_entry(sessions)
    r = await client.get(f"/v1/loans/{loan.loan_number}", headers=staff["ops"].headers)
    assert r.status_code == 200, r.text
    for member in (applicant, guarantor):
        entry = (await trail(client, staff["compliance_officer"], member, since))[0]
        assert entry["action"] == "GET /v1/loans/{loan_number}"
        assert entry["member_numbers"] == sorted([applicant, guarantor])


async def test_the_audit_trail_is_for_compliance_with_bounded_parameters(
    client: AsyncClient, staff: dict[str, Staff]
) -> None:
    for role in ("teller", "ops", "kyc_reviewer"):
        if role in staff:
            r = await client.get("/v1/audit", headers=staff[role].headers)
            assert r.status_code == 403 and r.json()["error"] == "Forbidden"
    officer = staff["compliance_officer"].headers
    unfiltered = await client.get("/v1/audit", params={"limit": 1}, headers=officer)
    assert unfiltered.status_code == 200 and len(unfiltered.json()["items"]) == 1
    for params in (
        {"limit": 0},
        {"limit": 201},
        {"before": 0},
        {"before": 2**63},
        {"member": "Robert'); DROP TABLE audit_log;--"},
        {"member": "M" + "1" * 20},
    ):
        r = await client.get("/v1/audit", params=params, headers=officer)
        assert r.status_code == 422 and r.json()["error"] == "ValidationError", params
