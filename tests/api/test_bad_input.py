"""Bad input is a 422 in the error shape at the edge and writes nothing (issue 11, point 3; issue
12, point 1): a NUL byte in any text, cursors beyond BIGINT, dates whose arithmetic leaves the
calendar, a body that is not UTF-8, an amount more precise than its currency. Run on the real
app over the real Temporal server, worker and Postgres."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from httpx import AsyncClient, Response
from sqlalchemy import func, select

from activities.ledger.chart import CASH
from activities.tables import Hold, Journal, LedgerAccount, Loan, LoanProduct, Member, ReversalEvent
from schemas.settings import Settings
from tests.api.conftest import Staff
from tests.conftest import CURRENCY, Factory, Sessions
from tests.loans.conftest import LoanKit, product_body
from tests.reversals.conftest import post

NUL = "\x00"
BEYOND_BIGINT = "99999999999999999999"
Idem = Callable[[], dict[str, str]]
TABLES = (Member, LedgerAccount, Journal, Hold, LoanProduct, Loan, ReversalEvent)


async def counts(sessions: Sessions) -> dict[str, int]:
    async with sessions() as s:
        return {
            t.__tablename__: int(await s.scalar(select(func.count()).select_from(t)) or 0)
            for t in TABLES
        }


def refused(r: Response, error: str = "ValidationError") -> None:
    assert (r.status_code, r.json().get("error")) == (422, error), r.text
    assert set(r.json()) == {"error", "detail"} and r.json()["detail"], r.text


def member_body(**overrides: str) -> dict[str, Any]:
    return {
        "first_name": "Nia",
        "last_name": "Mensah",
        "date_of_birth": "1990-05-17",
        "branch_code": "HQ",
        **overrides,
    }


async def test_a_nul_byte_anywhere_is_a_422_and_writes_nothing(
    api: AsyncClient,
    staff: dict[str, Staff],
    factory: Factory,
    sessions: Sessions,
    settings: Settings,
    idem: Idem,
) -> None:
    teller = staff["teller"]
    account = await factory.savings_account(100_00)
    kit = LoanKit(sessions, factory, settings)
    product, member = await kit.product(), await kit.member()
    before = await counts(sessions)
    loan = {"member_number": member, "product": product, "principal": "500.00", "repayments": 6}
    probes: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", "/v1/members", member_body(first_name=f"Ni{NUL}a")),
        ("POST", "/v1/members", member_body(last_name=NUL)),
        ("GET", "/v1/members?q=Ok%00", None),
        ("GET", "/v1/accounts/SV%00", None),
        ("GET", f"/v1/accounts/{account.code}%00/statement", None),
        ("POST", "/v1/loans", {**loan, "purpose": f"sewing{NUL}machines"}),
        (
            "POST",
            "/v1/movements",
            {
                "kind": "deposit",
                "amount": "5.00",
                "currency": CURRENCY,
                "to_account": account.code,
                "narrative": f"cash{NUL}",
            },
        ),
        ("POST", f"/v1/members/{member}/accounts", {"currency": f"US{NUL}"}),
    ]
    for method, path, body in probes:
        r = await api.request(method, path, json=body, headers=teller.headers | idem())
        refused(r)
    assert await counts(sessions) == before
    assert (await factory.account(account.id)).credits_posted_minor == 100_00


async def test_a_nul_byte_in_a_reversal_reason_is_refused_and_the_journal_stays_reversible(
    api: AsyncClient, staff: dict[str, Staff], factory: Factory, sessions: Sessions, idem: Idem
) -> None:
    """Before, the reason reached the workflow's activity, which retried for ever: the request
    never answered and every later request for the journal met the stuck case."""
    account = await factory.savings_account()
    journal = await post(sessions, "deposit", (factory.gl(CASH.number), account.id, 50_00))
    path = f"/v1/journals/{journal.journal_id}/reversals"
    teller = staff["teller"]
    before = await counts(sessions)
    bad = {"reason_code": "duplicate", "reason": f"keyed{NUL}twice"}
    refused(await api.post(path, json=bad, headers=teller.headers | idem()))
    assert await counts(sessions) == before
    good = {"reason_code": "duplicate", "reason": "keyed twice"}
    r = await api.post(path, json=good, headers=teller.headers | idem())
    assert r.status_code == 202 and r.json()["stage"] == "awaiting_approval", r.text
    assert (await factory.account(account.id)).debits_pending_minor == 50_00


async def test_cursors_beyond_bigint_are_a_422(
    api: AsyncClient, staff: dict[str, Staff], factory: Factory
) -> None:
    account = await factory.savings_account()
    for who, path in (
        ("teller", f"/v1/members?cursor={BEYOND_BIGINT}"),
        ("teller", f"/v1/accounts/{account.code}/statement?after={BEYOND_BIGINT}"),
        ("ops", f"/v1/notifications?before={BEYOND_BIGINT}"),
        ("teller", "/v1/members?cursor=-1"),
    ):
        refused(await api.get(path, headers=staff[who].headers))


async def test_dates_whose_arithmetic_leaves_the_calendar_are_refused(
    api: AsyncClient, staff: dict[str, Staff]
) -> None:
    officer = staff["teller"]
    preview = {"principal": "1000", "currency": CURRENCY, "annual_rate": "12"}
    r = await api.post(
        "/v1/loans/schedule-preview",
        json={**preview, "disbursed_on": "9999-06-01", "repayments": 600},
        headers=officer.headers,
    )
    refused(r)
    # Inside the calendar the API accepts, but 1,200 repayments 366 months apart run past 9999.
    r = await api.post(
        "/v1/loans/schedule-preview",
        json={**preview, "disbursed_on": "2999-06-01", "repayments": 1200, "every": 366},
        headers=officer.headers,
    )
    refused(r, "InvalidSchedule")
    assert "calendar" in r.json()["detail"]
    r = await api.get("/v1/reports/portfolio-at-risk?date=0001-01-01", headers=staff["ops"].headers)
    refused(r)


async def test_a_body_that_is_not_utf8_is_a_422(
    api: AsyncClient, staff: dict[str, Staff], sessions: Sessions, idem: Idem
) -> None:
    before = await counts(sessions)
    r = await api.post(
        "/v1/members",
        content=b'{"first_name": "Ni\xffa", "last_name": "M", "date_of_birth": "1990-01-01"}',
        headers=staff["teller"].headers | idem() | {"Content-Type": "application/json"},
    )
    refused(r)
    assert "UTF-8" in r.json()["detail"]
    assert await counts(sessions) == before


async def test_an_amount_more_precise_than_its_currency_is_refused_never_rounded(
    api: AsyncClient, staff: dict[str, Staff], factory: Factory, sessions: Sessions, idem: Idem
) -> None:
    account = await factory.savings_account()
    before = await counts(sessions)
    for amount in (
        "1.000000000000000000000000000001",
        "1.0000000000000000000000000000000000001",
        "92233720368547758.08",  # one minor unit beyond BIGINT
        "1e999999999",
        "0." + "0" * 36 + "1",
    ):
        r = await api.post(
            "/v1/movements",
            json={
                "kind": "deposit",
                "amount": amount,
                "currency": CURRENCY,
                "to_account": account.code,
            },
            headers=staff["teller"].headers | idem(),
        )
        refused(r, "InvalidAmount")
    r = await api.post(
        "/v1/movements",
        json={
            "kind": "deposit",
            "amount": "1" * 41,
            "currency": CURRENCY,
            "to_account": account.code,
        },
        headers=staff["teller"].headers | idem(),
    )
    refused(r)
    assert await counts(sessions) == before
    assert (await factory.account(account.id)).credits_posted_minor == 0


async def test_an_over_precise_rate_or_percentage_is_refused_never_rounded(
    api: AsyncClient, staff: dict[str, Staff], sessions: Sessions
) -> None:
    """The same trap in every other decimal a caller sends: a rate, a percentage, an installment
    multiple. Postgres would round a product's rate to its column's 6 decimals."""
    admin = staff["admin"]
    before = await counts(sessions)
    for overrides in (
        {"annual_interest_rate": "12.0000001"},
        {"penalty_rate": "2.00000000000000000000000000001"},
        {"guarantee": {"min_guaranteed_by_others_pct": "10.0000001", "own_savings_pct": "0"}},
        {"disbursement_fee": {"kind": "percent", "value": "1.0000000000000000000000000000001"}},
        {"installment_multiple": "1.000000000000000000000000000001"},
    ):
        r = await api.post(
            "/v1/loan-products", json=product_body(**overrides), headers=admin.headers
        )
        assert r.status_code == 422, (overrides, r.text)
    assert await counts(sessions) == before
    r = await api.post(
        "/v1/loans/schedule-preview",
        json={"principal": "1000", "installment_multiple": "1.000000000000000000000000000001"},
        headers=admin.headers,
    )
    refused(r, "InvalidSchedule")
    r = await api.post(
        "/v1/loans/schedule-preview",
        json={"principal": "1000", "annual_rate": "12.00000000000000000000000000001"},
        headers=admin.headers,
    )
    refused(r)


async def test_an_idempotency_key_is_required(
    api: AsyncClient, staff: dict[str, Staff], sessions: Sessions
) -> None:
    before = await counts(sessions)
    r = await api.post("/v1/members", json=member_body(), headers=staff["teller"].headers)
    refused(r)
    assert "Idempotency-Key" in r.json()["detail"]
    assert await counts(sessions) == before
    key = {"Idempotency-Key": uuid.uuid4().hex}
    r = await api.post("/v1/members", json=member_body(), headers=staff["teller"].headers | key)
    assert r.status_code == 201, r.text


DECISION_ROUTES = ("/decisions", "/amendments", "/withdrawal", "/consent")


async def test_the_openapi_document_tells_the_truth_about_errors(api: AsyncClient) -> None:
    """Issue 11 point 9: every error response is the `{"error", "detail"}` body, routes list
    their 401/403/404/409, and `Idempotency-Key` is required where it is."""
    spec = (await api.get("/openapi.json")).json()
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    keyed = 0
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            for status, response in op["responses"].items():
                if int(status) >= 400 and path != "/ready":  # /ready: its checks, by design
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (path, status)
            if path.startswith("/v1/") and path != "/v1/auth/token":
                assert {"401", "403"} <= set(op["responses"]) or path == "/v1/auth/me", path
            if "{" in path:
                assert "404" in op["responses"], (method, path)
            for param in op.get("parameters", []):
                if param["name"] == "Idempotency-Key":
                    keyed += 1
                    # Optional on decisions (it only names the Update), required where it starts.
                    decision = path.endswith(DECISION_ROUTES)
                    assert param.get("required", False) is not decision, path
                    assert "409" in op["responses"], path
    assert keyed >= 7
