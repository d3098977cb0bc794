"""Members and accounts through the API: create, read, search, open, statement, close."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date
from typing import Any

from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.tables import Member
from tests.api.conftest import Staff
from tests.conftest import Factory

Idem = Callable[[], dict[str, str]]


def member_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "first_name": "Amina",
        "last_name": f"Okello{uuid.uuid4().hex[:6]}",
        "date_of_birth": "1988-04-12",
        "branch_code": "HQ",
        "phone": "+256 700 123456",
    }
    return body | overrides


async def member_count(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Member)) or 0)


async def test_create_get_and_search(
    client: AsyncClient, staff: dict[str, Staff], idem: Idem
) -> None:
    teller = staff["teller"].headers
    body = member_body()
    r = await client.post("/v1/members", json=body, headers=teller | idem())
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["member_number"].startswith("M") and created["kyc_status"] == "unverified"
    assert created["branch_code"] == "HQ" and created["last_name"] == body["last_name"]

    got = await client.get(f"/v1/members/{created['member_number']}", headers=teller)
    assert got.status_code == 200 and got.json() == created

    by_name = await client.get(
        "/v1/members", params={"q": body["last_name"][:9].lower()}, headers=teller
    )
    assert [m["member_number"] for m in by_name.json()["items"]] == [created["member_number"]]
    by_full = await client.get(
        "/v1/members", params={"q": f"amina {body['last_name']}"}, headers=teller
    )
    assert [m["id"] for m in by_full.json()["items"]] == [created["id"]]
    by_number = await client.get(
        "/v1/members", params={"q": created["member_number"]}, headers=teller
    )
    assert [m["id"] for m in by_number.json()["items"]] == [created["id"]]
    wildcard = await client.get("/v1/members", params={"q": "%"}, headers=teller)
    assert wildcard.status_code == 200 and wildcard.json()["items"] == []

    missing = await client.get("/v1/members/M9999999", headers=teller)
    assert missing.status_code == 404 and missing.json()["error"] == "NotFound"


async def test_search_pages_without_gaps(
    client: AsyncClient, staff: dict[str, Staff], idem: Idem
) -> None:
    teller = staff["teller"].headers
    surname = f"Pager{uuid.uuid4().hex[:6]}"
    for n in range(5):
        r = await client.post(
            "/v1/members",
            json=member_body(first_name=f"P{n}", last_name=surname),
            headers=teller | idem(),
        )
        assert r.status_code == 201
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"q": surname, "limit": 2, "branch": "HQ", "status": "active"}
        if cursor is not None:
            params["cursor"] = cursor
        page = (await client.get("/v1/members", params=params, headers=teller)).json()
        seen += [m["id"] for m in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 5 and seen == sorted(set(seen))
    other_branch = await client.get(
        "/v1/members", params={"q": surname, "branch": "XX"}, headers=teller
    )
    assert other_branch.json() == {"items": [], "next_cursor": None}


async def test_bad_input_is_4xx_in_error_shape_and_writes_nothing(
    client: AsyncClient,
    staff: dict[str, Staff],
    idem: Idem,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    teller = staff["teller"].headers
    before = await member_count(sessions)
    malformed = await client.post(
        "/v1/members",
        content=b'{"first_name": "A",',
        headers=teller | idem() | {"Content-Type": "application/json"},
    )
    cases: list[tuple[object, str]] = [
        (member_body(nickname="Mimi"), "body.nickname"),
        (member_body(date_of_birth="1988-13-45"), "body.date_of_birth"),
        (member_body(date_of_birth="2999-01-01"), "future"),
        (member_body(first_name=""), "body.first_name"),
        (member_body(email="not-an-email"), "body.email"),
        (member_body(phone="call me"), "body.phone"),
        ([1, 2], "body"),
    ]
    answers = [(malformed, "not valid JSON")]
    for body, needle in cases:
        answers.append(
            (await client.post("/v1/members", json=body, headers=teller | idem()), needle)
        )
    for r, needle in answers:
        assert r.status_code == 422, (needle, r.text)
        assert set(r.json()) == {"error", "detail"} and r.json()["error"] == "ValidationError"
        assert needle in r.json()["detail"], r.json()
    unknown_branch = await client.post(
        "/v1/members", json=member_body(branch_code="NOPE"), headers=teller | idem()
    )
    assert unknown_branch.status_code == 404 and unknown_branch.json()["error"] == "NotFound"
    no_key = await client.post("/v1/members", json=member_body(), headers=teller)
    assert no_key.status_code == 422 and "Idempotency-Key" in no_key.json()["detail"]
    long_key = await client.post(
        "/v1/members", json=member_body(), headers=teller | {"Idempotency-Key": "k" * 201}
    )
    assert long_key.status_code == 422 and long_key.json()["error"] == "ValidationError"
    assert await member_count(sessions) == before

    bad_query = await client.get("/v1/members", params={"limit": 0}, headers=teller)
    assert bad_query.status_code == 422 and "query.limit" in bad_query.json()["detail"]
    bad_status = await client.get("/v1/members", params={"status": "gone"}, headers=teller)
    assert bad_status.status_code == 422


async def test_open_view_and_close_account(
    client: AsyncClient, staff: dict[str, Staff], idem: Idem
) -> None:
    teller, manager = staff["teller"].headers, staff["branch_manager"].headers
    member = (await client.post("/v1/members", json=member_body(), headers=teller | idem())).json()
    opened = await client.post(
        f"/v1/members/{member['member_number']}/accounts",
        json={"kind": "savings", "currency": "USD"},
        headers=teller | idem(),
    )
    assert opened.status_code == 201, opened.text
    account = opened.json()
    assert (
        account["number"].startswith("SV") and account["member_number"] == member["member_number"]
    )
    assert (account["balance"], account["available"], account["status"]) == ("0.00", "0.00", "open")

    unknown_currency = await client.post(
        f"/v1/members/{member['member_number']}/accounts",
        json={"currency": "XYZ"},
        headers=teller | idem(),
    )
    assert (
        unknown_currency.status_code == 422
        and unknown_currency.json()["error"] == "CurrencyMismatch"
    )
    loan_kind = await client.post(
        f"/v1/members/{member['member_number']}/accounts",
        json={"kind": "loan", "currency": "USD"},
        headers=teller | idem(),
    )
    assert loan_kind.status_code == 422
    no_member = await client.post(
        "/v1/members/M0000000/accounts", json={"currency": "USD"}, headers=teller | idem()
    )
    assert no_member.status_code == 404

    closed = await client.post(f"/v1/accounts/{account['number']}/close", headers=manager)
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    assert closed.json()["closed_at"] is not None
    again = await client.post(f"/v1/accounts/{account['number']}/close", headers=manager)
    assert again.status_code == 200 and again.json()["status"] == "closed"
    assert (await client.get("/v1/accounts/SV99999999", headers=teller)).json()[
        "error"
    ] == "AccountNotFound"


async def test_close_with_balance_is_409(
    client: AsyncClient, staff: dict[str, Staff], factory: Factory
) -> None:
    account = await factory.savings_account(funded_minor=1_000)
    r = await client.post(
        f"/v1/accounts/{account.code}/close", headers=staff["branch_manager"].headers
    )
    assert r.status_code == 409 and r.json()["error"] == "AccountNotEmpty"
    view = await client.get(f"/v1/accounts/{account.code}", headers=staff["teller"].headers)
    assert view.json()["status"] == "open" and view.json()["balance"] == "10.00"


async def test_statement_running_balance_and_paging(
    client: AsyncClient, staff: dict[str, Staff], factory: Factory
) -> None:
    account = await factory.savings_account()
    for amount in (10_000, 2_550, 45):
        await factory.fund(account.id, amount)
    headers = staff["finance"].headers
    full = await client.get(f"/v1/accounts/{account.code}/statement", headers=headers)
    assert full.status_code == 200, full.text
    body = full.json()
    assert body["opening_balance"] == "0.00" and body["closing_balance"] == "125.95"
    assert [(ln["credit"], ln["debit"], ln["balance"]) for ln in body["lines"]] == [
        ("100.00", None, "100.00"),
        ("25.50", None, "125.50"),
        ("0.45", None, "125.95"),
    ]
    assert body["next_cursor"] is None and body["account"]["balance"] == "125.95"

    first = (
        await client.get(
            f"/v1/accounts/{account.code}/statement", params={"limit": 2}, headers=headers
        )
    ).json()
    assert [ln["balance"] for ln in first["lines"]] == ["100.00", "125.50"]
    second = (
        await client.get(
            f"/v1/accounts/{account.code}/statement",
            params={"limit": 2, "after": first["next_cursor"]},
            headers=headers,
        )
    ).json()
    assert [ln["balance"] for ln in second["lines"]] == ["125.95"]
    assert second["next_cursor"] is None and second["closing_balance"] == "125.95"

    today = date.today()
    future = (
        await client.get(
            f"/v1/accounts/{account.code}/statement",
            params={"from": date(today.year + 1, 1, 1).isoformat()},
            headers=headers,
        )
    ).json()
    assert future["lines"] == [] and future["opening_balance"] == "125.95"
    assert future["closing_balance"] == "125.95"
    past = (
        await client.get(
            f"/v1/accounts/{account.code}/statement", params={"to": "2000-01-01"}, headers=headers
        )
    ).json()
    assert past["lines"] == [] and past["closing_balance"] == "0.00"

    for params in (
        {"from": "2024-02-30"},
        {"from": "2024-03-02", "to": "2024-03-01"},
        {"limit": 501},
    ):
        bad = await client.get(
            f"/v1/accounts/{account.code}/statement", params=params, headers=headers
        )
        assert bad.status_code == 422 and bad.json()["error"] == "ValidationError", params
