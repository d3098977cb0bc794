"""`POST /v1/loans/schedule-preview` on the real app and database: any staff role, the issue's
worked example, and every kind of bad input as a 4xx in the one error shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.tables import ROLES
from api.app import create_app
from schemas.settings import Settings
from tests.api.conftest import NO_TEMPORAL, Staff, make_client, new_staff

PATH = "/v1/loans/schedule-preview"
EXAMPLE: dict[str, Any] = {
    "principal": "5000",
    "currency": "USD",
    "annual_rate": "12",
    "repayments": 18,
    "disbursed_on": "2022-11-01",
    "first_repayment_on": "2022-12-01",
    "installment_multiple": "1",
}


@pytest.fixture(scope="module")
async def preview_app(settings: Settings, chart: dict[str, int]) -> AsyncIterator[FastAPI]:
    app = create_app(settings.model_copy(update={"temporal_address": NO_TEMPORAL}))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(preview_app: FastAPI) -> AsyncIterator[AsyncClient]:
    async with make_client(preview_app) as c:
        yield c


@pytest.fixture(scope="module")
async def teller(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> Staff:
    return await new_staff(sessions, settings, "teller")


async def test_issue_example(client: AsyncClient, teller: Staff) -> None:
    r = await client.post(PATH, json=EXAMPLE, headers=teller.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["currency"] == "USD"
    assert body["installments"][0] == {
        "number": 1,
        "due_date": "2022-12-01",
        "principal": "255.00",
        "interest": "50.00",
        "total": "305.00",
        "balance": "4745.00",
    }
    assert len(body["installments"]) == 18
    assert body["installments"][-1]["balance"] == "0.00"
    assert body["total_principal"] == "5000.00"
    assert body["total_interest"] == "488.22"
    assert body["total_due"] == "5488.22"


async def test_every_staff_role_may_preview(
    client: AsyncClient, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    for role in ROLES:
        user = await new_staff(sessions, settings, role)
        r = await client.post(
            PATH, json={"principal": "100", "currency": "USD"}, headers=user.headers
        )
        assert r.status_code == 200, (role, r.text)
        assert len(r.json()["installments"]) == 12  # the defaults: 12 monthly installments


async def test_refused_without_token_or_role(
    client: AsyncClient, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    r = await client.post(PATH, json=EXAMPLE)
    assert (r.status_code, r.json()["error"]) == (401, "Unauthenticated")
    nobody = await new_staff(sessions, settings)
    r = await client.post(PATH, json=EXAMPLE, headers=nobody.headers)
    assert (r.status_code, r.json()["error"]) == (403, "Forbidden")


@pytest.mark.parametrize(
    ("change", "status", "error", "detail"),
    [
        ({"grace_principal": 18}, 422, "InvalidSchedule", "grace on principal"),
        ({"first_repayment_on": "2022-10-01"}, 422, "InvalidSchedule", "after the disbursement"),
        ({"principal": "5000.001"}, 422, "InvalidSchedule", "more than 2 decimal places"),
        ({"principal": "0"}, 422, "InvalidSchedule", "greater than zero"),
        ({"installment_multiple": "abc"}, 422, "InvalidSchedule", "installment multiple"),
        ({"installment_multiple": "10000"}, 422, "InvalidSchedule", "more than the installment"),
        ({"currency": "XTS"}, 422, "CurrencyMismatch", "unknown currency"),
        ({"frequency": "years"}, 422, "ValidationError", "frequency"),
        ({"annual_rate": "-1"}, 422, "ValidationError", "annual_rate"),
        ({"repayments": 0}, 422, "ValidationError", "repayments"),
        ({"rounding": "SIDEWAYS"}, 422, "ValidationError", "rounding"),
        ({"unexpected": 1}, 422, "ValidationError", "unexpected"),
    ],
)
async def test_bad_input_is_a_clear_4xx(
    client: AsyncClient, teller: Staff, change: dict[str, Any], status: int, error: str, detail: str
) -> None:
    r = await client.post(PATH, json=EXAMPLE | change, headers=teller.headers)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error", "detail"}
    assert r.json()["error"] == error
    assert detail in r.json()["detail"]
