"""Trial balance, journal lookup, the audit trail and the health probes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date
from decimal import Decimal

from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from activities.db import in_transaction
from activities.ledger import engine as ledger_engine
from activities.ledger.chart import CASH, MEMBER_SAVINGS
from activities.tables import AuditEntry
from api.app import create_app
from schemas.ledger import JournalRequest, PostingLine, ReversalRequest
from schemas.settings import Settings
from tests.api.conftest import Staff, make_client
from tests.api.test_members_accounts import member_body
from tests.conftest import Factory

Idem = Callable[[], dict[str, str]]


def line(body: dict[str, object], number: str) -> dict[str, str]:
    lines = body["lines"]
    assert isinstance(lines, list)
    return next(ln for ln in lines if ln["number"] == number)


async def test_trial_balance_rolls_members_into_control_and_balances(
    client: AsyncClient, staff: dict[str, Staff], factory: Factory
) -> None:
    headers = staff["finance"].headers
    before = (await client.get("/v1/ledger/trial-balance?currency=USD", headers=headers)).json()
    account = await factory.savings_account(funded_minor=12_345)
    after = (await client.get("/v1/ledger/trial-balance?currency=USD", headers=headers)).json()

    assert after["balanced"] is True and after["total_debit"] == after["total_credit"]
    assert Decimal(after["total_debit"]) > 0
    assert all(ln["number"].endswith("-USD") for ln in after["lines"])
    assert account.code not in {ln["number"] for ln in after["lines"]}
    savings, cash = f"{MEMBER_SAVINGS.number}-USD", f"{CASH.number}-USD"
    assert Decimal(line(after, savings)["credit"]) - Decimal(
        line(before, savings)["credit"]
    ) == Decimal("123.45")
    assert Decimal(line(after, cash)["debit"]) - Decimal(line(before, cash)["debit"]) == Decimal(
        "123.45"
    )

    unknown = await client.get("/v1/ledger/trial-balance?currency=ZZZ", headers=headers)
    assert unknown.status_code == 404
    lower = await client.get("/v1/ledger/trial-balance?currency=usd", headers=headers)
    assert lower.status_code == 422
    missing = await client.get("/v1/ledger/trial-balance", headers=headers)
    assert missing.status_code == 422 and "query.currency" in missing.json()["detail"]


async def test_journal_lookup_with_reversal_links(
    client: AsyncClient,
    staff: dict[str, Staff],
    factory: Factory,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    account = await factory.savings_account()
    journal_id, reversal_id = f"api-j-{uuid.uuid4().hex}", f"api-r-{uuid.uuid4().hex}"
    deposit = JournalRequest(
        journal_id=journal_id,
        kind="deposit",
        value_date=date.today(),
        description="counter deposit",
        postings=[
            PostingLine(
                debit_account_id=factory.gl(CASH.number),
                credit_account_id=account.id,
                amount_minor=7_005,
                currency="USD",
            )
        ],
    )
    await in_transaction(sessions, lambda s: ledger_engine.post_journal(s, deposit))
    await in_transaction(
        sessions,
        lambda s: ledger_engine.reverse_journal(
            s,
            ReversalRequest(
                original_journal_id=journal_id, journal_id=reversal_id, value_date=date.today()
            ),
        ),
    )
    headers = staff["ops"].headers
    r = await client.get(f"/v1/journals/{journal_id}", headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["reversed_by_journal_id"] == reversal_id and body["reverses_journal_id"] is None
    assert body["postings"] == [
        {
            "line": 1,
            "debit_account": f"{CASH.number}-USD",
            "credit_account": account.code,
            "amount": "70.05",
            "currency": "USD",
        }
    ]
    rev = (await client.get(f"/v1/journals/{reversal_id}", headers=headers)).json()
    assert rev["reverses_journal_id"] == journal_id
    assert rev["postings"][0]["debit_account"] == account.code

    missing = await client.get("/v1/journals/no-such-journal", headers=headers)
    assert missing.status_code == 404
    assert missing.json() == {"error": "JournalNotFound", "detail": "no journal 'no-such-journal'"}


async def audit_rows(sessions: async_sessionmaker[AsyncSession], key: str) -> list[AuditEntry]:
    async with sessions() as session:
        return list(
            (
                await session.scalars(
                    select(AuditEntry)
                    .where(AuditEntry.idempotency_key == key)
                    .order_by(AuditEntry.id)
                )
            ).all()
        )


async def test_commands_are_audited_with_outcome(
    client: AsyncClient,
    staff: dict[str, Staff],
    idem: Idem,
    factory: Factory,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    teller = staff["teller"]
    key = idem()
    body = member_body()
    headers = teller.headers | key | {"User-Agent": "branch-desk/1.0"}
    await client.post("/v1/members", json=body, headers=headers)
    await client.post("/v1/members", json=body, headers=headers)  # replay
    await client.post("/v1/members", json=member_body(), headers=headers)  # conflict
    await client.get("/v1/loan-products", headers=headers)  # a read of no personal data
    rows = await audit_rows(sessions, key["Idempotency-Key"])
    assert [(a.outcome_status, a.outcome) for a in rows] == [
        (201, "ok"),
        (201, "ok"),
        (409, "IdempotencyKeyConflict"),
    ]
    first = rows[0]
    assert (first.actor_user_id, first.actor_username) == (teller.id, teller.username)
    assert first.action == "POST /v1/members" and first.resource == "/v1/members"
    assert str(first.client_address) == "10.0.0.7" and first.user_agent == "branch-desk/1.0"

    account = await factory.savings_account(funded_minor=500)
    manager_key = idem()
    await client.post(
        f"/v1/accounts/{account.code}/close", headers=staff["branch_manager"].headers | manager_key
    )
    await client.post(f"/v1/accounts/{account.code}/close", headers=teller.headers | manager_key)
    rows = await audit_rows(sessions, manager_key["Idempotency-Key"])
    assert [(a.action, a.resource, a.outcome_status, a.outcome) for a in rows] == [
        (
            "POST /v1/accounts/{number}/close",
            f"/v1/accounts/{account.code}/close",
            409,
            "AccountNotEmpty",
        ),
        (
            "POST /v1/accounts/{number}/close",
            f"/v1/accounts/{account.code}/close",
            403,
            "Forbidden",
        ),
    ]
    assert rows[1].actor_user_id == teller.id


async def test_health_and_ready(client: AsyncClient) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    r = await client.get("/ready")
    # This app was built pointing at a port where no Temporal listens.
    assert r.status_code == 503
    assert r.json() == {"status": "unavailable", "checks": {"postgres": "ok", "temporal": "down"}}


async def test_ready_with_temporal(api_settings: Settings, temporal_client: Client) -> None:
    app = create_app(api_settings, temporal_client=temporal_client)
    async with app.router.lifespan_context(app), make_client(app) as c:
        r = await c.get("/ready")
    assert r.status_code == 200, r.text
    assert r.json()["checks"] == {"postgres": "ok", "temporal": "ok"}


async def test_api_starts_without_temporal_and_connects_lazily(
    settings: Settings, temporal_client: Client
) -> None:
    """The app is built with the address of a Temporal that is up; nothing connects at build."""
    address = temporal_client.service_client.config.target_host
    app = create_app(settings.model_copy(update={"temporal_address": address}))
    assert not hasattr(app.state, "sessions")
    async with app.router.lifespan_context(app), make_client(app) as c:
        r = await c.get("/ready")
    assert r.status_code == 200 and r.json()["checks"]["temporal"] == "ok"
