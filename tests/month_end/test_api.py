"""Savings products and the month-end report over HTTP: roles, validation, conflicts, 404."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.db import in_transaction
from activities.month_end import finish_month_end, plan_month_end
from schemas.month_end import FinishRequest, PlanRequest
from tests.api.conftest import Staff
from tests.conftest import Factory

PRODUCT = {
    "name": "Junior saver",
    "currency": "USD",
    "annual_rate": "0.045",
    "tiers": [{"min_balance": "1000.00", "annual_rate": "0.05"}],
    "compounding": "daily",
    "posting": "quarterly",
    "days_in_year": 360,
    "min_balance": "5.00",
    "withholding_tax_rate": "0.1",
}


def code() -> str:
    return f"JS{uuid.uuid4().hex[:8].upper()}"


async def test_products_created_by_finance_listed_for_staff(
    client: AsyncClient, staff: dict[str, Staff]
) -> None:
    body = {**PRODUCT, "code": code()}
    created = await client.post("/v1/savings-products", json=body, headers=staff["finance"].headers)
    assert created.status_code == 201, created.text
    view = created.json()
    assert view["tiers"] == [{"min_balance": "1000.00", "annual_rate": "0.05"}]
    assert view["min_balance"] == "5.00" and view["accounts"] == 0
    again = await client.post("/v1/savings-products", json=body, headers=staff["admin"].headers)
    assert again.status_code == 409 and again.json()["error"] == "Duplicate"
    listed = await client.get("/v1/savings-products", headers=staff["teller"].headers)
    assert body["code"] in [p["code"] for p in listed.json()]


async def test_product_refusals(client: AsyncClient, staff: dict[str, Staff]) -> None:
    teller = await client.post(
        "/v1/savings-products", json={**PRODUCT, "code": code()}, headers=staff["teller"].headers
    )
    assert teller.status_code == 403 and teller.json()["error"] == "Forbidden"
    for bad in (
        {"days_in_year": 364},
        {"annual_rate": "-0.01"},
        {"posting": "weekly"},
        {"min_balance": "5.001"},
        {"currency": "XXX"},
    ):
        answer = await client.post(
            "/v1/savings-products",
            json={**PRODUCT, "code": code(), **bad},
            headers=staff["finance"].headers,
        )
        assert answer.status_code == 422, (bad, answer.text)
        assert answer.json()["error"] in ("ValidationError", "InvalidAmount", "CurrencyMismatch")
    listed = await client.get("/v1/savings-products", headers=staff["finance"].headers)
    assert all(p["days_in_year"] in (360, 365) for p in listed.json())


async def test_enroll_a_savings_account(
    client: AsyncClient, staff: dict[str, Staff], factory: Factory
) -> None:
    product = code()
    await client.post(
        "/v1/savings-products", json={**PRODUCT, "code": product}, headers=staff["finance"].headers
    )
    account = await factory.savings_account()
    path = f"/v1/savings-products/{product}/accounts"
    body = {"account": account.code, "opened_on": "2026-01-05"}
    finance = await client.post(path, json=body, headers=staff["finance"].headers)
    assert finance.status_code == 403
    done = await client.post(path, json=body, headers=staff["teller"].headers)
    assert done.status_code == 201 and done.json()["opened_on"] == "2026-01-05"
    same = await client.post(path, json=body, headers=staff["teller"].headers)
    assert same.status_code == 201
    other = await client.post(
        path, json={**body, "opened_on": "2026-02-01"}, headers=staff["teller"].headers
    )
    assert other.status_code == 409
    missing = await client.post(
        path, json={"account": "SV99999999"}, headers=staff["teller"].headers
    )
    assert missing.status_code == 404
    unknown = await client.post(
        "/v1/savings-products/NOPE/accounts", json=body, headers=staff["teller"].headers
    )
    assert unknown.status_code == 404


async def test_month_end_report(
    client: AsyncClient, staff: dict[str, Staff], sessions: async_sessionmaker[AsyncSession]
) -> None:
    period = "2001-03"
    started = datetime(2001, 4, 1, tzinfo=UTC)
    await in_transaction(
        sessions,
        lambda s: plan_month_end(
            s, PlanRequest(period=period, workflow_id="w", started_at=started)
        ),
    )
    running = await client.get(f"/v1/reports/month-end/{period}", headers=staff["ops"].headers)
    assert running.status_code == 200 and running.json()["status"] == "running"
    await in_transaction(
        sessions,
        lambda s: finish_month_end(
            s, FinishRequest(period=period, workflow_id="w", started_at=started)
        ),
    )
    done = await client.get(f"/v1/reports/month-end/{period}", headers=staff["finance"].headers)
    assert done.status_code == 200
    assert done.json()["status"] == "completed" and done.json()["value_date"] == "2001-03-31"
    teller = await client.get(f"/v1/reports/month-end/{period}", headers=staff["teller"].headers)
    assert teller.status_code == 403
    never = await client.get("/v1/reports/month-end/1999-01", headers=staff["finance"].headers)
    assert never.status_code == 404 and never.json()["error"] == "NotFound"
    bad = await client.get("/v1/reports/month-end/2026-13", headers=staff["finance"].headers)
    assert bad.status_code == 422
