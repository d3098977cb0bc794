"""Money movements through the API, a real Temporal dev server, the real worker and Postgres."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from decimal import Decimal

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select, update
from temporalio.client import Client

from activities.direct import DirectPool
from activities.ledger.chart import CASH
from activities.ledger.verify import verify_ledger
from activities.tables import AuditEntry, Journal, LedgerAccount
from api.app import create_app
from schemas.settings import Settings
from tests.api.conftest import Staff, make_client, new_staff
from tests.conftest import CURRENCY, Factory, Sessions
from worker import build_workers

Idem = Callable[[], dict[str, str]]


@pytest.fixture
async def api(
    settings: Settings, temporal_client: Client, worker: str, chart: dict[str, int]
) -> AsyncIterator[AsyncClient]:
    """The app wired to the real Temporal server, starting workflows on this test's queue."""
    app = create_app(
        settings.model_copy(
            update={"interactive_task_queue": worker, "approval_threshold": Decimal("500")}
        ),
        temporal_client=temporal_client,
    )
    async with app.router.lifespan_context(app), make_client(app) as client:
        yield client


async def movement(api: AsyncClient, who: Staff, idem: Idem, **body: str):  # type: ignore[no-untyped-def]
    return await api.post(
        "/v1/movements", json={"currency": CURRENCY, **body}, headers={**who.headers, **idem()}
    )


async def account_json(api: AsyncClient, who: Staff, number: str) -> dict[str, str]:
    response = await api.get(f"/v1/accounts/{number}", headers=who.headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_fifty_concurrent_withdrawals_give_exactly_ten(
    api: AsyncClient, staff: dict[str, Staff], factory: Factory, idem: Idem, sessions: Sessions
) -> None:
    acc = await factory.savings_account(1_000_00)
    responses = await asyncio.gather(
        *(
            movement(
                api,
                staff["teller"],
                idem,
                kind="withdrawal",
                amount="100.00",
                from_account=acc.code,
            )
            for _ in range(50)
        )
    )
    codes = sorted(r.status_code for r in responses)
    assert codes.count(201) == 10 and codes.count(422) == 40, codes
    assert {r.json()["error"] for r in responses if r.status_code == 422} == {"InsufficientFunds"}
    body = await account_json(api, staff["teller"], acc.code)
    assert body["balance"] == "0.00" and body["available"] == "0.00"
    async with sessions() as s:
        assert (await verify_ledger(s)).ok


async def test_deposit_transfer_and_statement(
    api: AsyncClient, staff: dict[str, Staff], factory: Factory, idem: Idem
) -> None:
    a = await factory.savings_account()
    b = await factory.savings_account()
    teller = staff["teller"]
    dep = await movement(api, teller, idem, kind="deposit", amount="250.00", to_account=a.code)
    assert dep.status_code == 201, dep.text
    assert dep.json()["stage"] == "completed" and dep.headers["Location"].startswith(
        "/v1/movements/"
    )
    tr = await movement(
        api, teller, idem, kind="transfer", amount="75.50", from_account=a.code, to_account=b.code
    )
    assert tr.status_code == 201, tr.text
    assert (await account_json(api, teller, a.code))["balance"] == "174.50"
    assert (await account_json(api, teller, b.code))["balance"] == "75.50"
    statement = (await api.get(f"/v1/accounts/{a.code}/statement", headers=teller.headers)).json()
    assert [line["balance"] for line in statement["lines"]] == ["250.00", "174.50"]
    got = await api.get(f"/v1/movements/{tr.json()['movement_id']}", headers=teller.headers)
    assert got.status_code == 200 and got.json()["journal_id"] == tr.json()["journal_id"]


async def test_large_withdrawal_needs_another_supervisor(
    api: AsyncClient,
    staff: dict[str, Staff],
    factory: Factory,
    idem: Idem,
    sessions: Sessions,
    api_settings: Settings,
) -> None:
    acc = await factory.savings_account(2_000_00)
    manager = staff["branch_manager"]
    requested = await movement(
        api, manager, idem, kind="withdrawal", amount="1200.00", from_account=acc.code
    )
    assert requested.status_code == 202, requested.text
    mid = requested.json()["movement_id"]
    assert requested.json()["stage"] == "awaiting_approval"
    assert (await account_json(api, manager, acc.code))["available"] == "800.00"

    inbox = await api.get("/v1/movements?stage=awaiting_approval", headers=manager.headers)
    assert inbox.status_code == 200  # visibility is eventually consistent: not asserted on mid

    decide = f"/v1/movements/{mid}/decisions"
    own = await api.post(decide, json={"approve": True}, headers=manager.headers)
    assert own.status_code == 403 and own.json()["error"] == "FourEyesViolation"
    teller = await api.post(decide, json={"approve": True}, headers=staff["teller"].headers)
    assert teller.status_code == 403 and teller.json()["error"] == "Forbidden"
    admin = await api.post(decide, json={"approve": True}, headers=staff["admin"].headers)
    assert admin.status_code == 403  # the workflow, not the API, decides who may approve
    assert (await account_json(api, manager, acc.code))["balance"] == "2000.00"

    other = await new_staff(sessions, api_settings, "branch_manager")
    approved = await api.post(
        decide, json={"approve": True, "reason": "ID seen"}, headers=other.headers
    )
    assert approved.status_code == 200, approved.text
    assert (
        approved.json()["stage"] == "completed" and approved.json()["decided_by"] == other.username
    )
    assert (await account_json(api, manager, acc.code))["balance"] == "800.00"
    again = await api.post(decide, json={"approve": False}, headers=other.headers)
    assert again.status_code == 409 and again.json()["error"] == "NotAwaitingDecision"


async def test_rejected_withdrawal_releases_the_hold(
    api: AsyncClient, staff: dict[str, Staff], factory: Factory, idem: Idem
) -> None:
    acc = await factory.savings_account(2_000_00)
    requested = await movement(
        api, staff["teller"], idem, kind="withdrawal", amount="600.00", from_account=acc.code
    )
    assert requested.status_code == 202
    rejected = await api.post(
        f"/v1/movements/{requested.json()['movement_id']}/decisions",
        json={"approve": False, "reason": "signature mismatch"},
        headers=staff["branch_manager"].headers,
    )
    assert rejected.status_code == 200 and rejected.json()["stage"] == "rejected"
    assert (await account_json(api, staff["teller"], acc.code))["available"] == "2000.00"


async def test_idempotency_key_replays_and_conflicts(
    api: AsyncClient, staff: dict[str, Staff], factory: Factory, sessions: Sessions
) -> None:
    acc = await factory.savings_account()
    headers = {**staff["teller"].headers, "Idempotency-Key": uuid.uuid4().hex}
    body = {"kind": "deposit", "amount": "10.00", "currency": CURRENCY, "to_account": acc.code}
    first = await api.post("/v1/movements", json=body, headers=headers)
    second = await api.post("/v1/movements", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    other = await api.post("/v1/movements", json={**body, "amount": "11.00"}, headers=headers)
    assert other.status_code == 409 and other.json()["error"] == "IdempotencyKeyConflict"
    assert (await account_json(api, staff["teller"], acc.code))["balance"] == "10.00"


@pytest.mark.parametrize(
    ("kind", "sides", "status", "error"),
    [
        ("deposit", {"to_account": "closed"}, 422, "AccountClosed"),
        ("deposit", {"to_account": "cash"}, 403, "Forbidden"),
        ("withdrawal", {"from_account": "closed"}, 422, "AccountClosed"),
        ("withdrawal", {"from_account": "SV99999999"}, 404, "AccountNotFound"),
        ("transfer", {"from_account": "SV99999999", "to_account": "open"}, 404, "AccountNotFound"),
        ("transfer", {"from_account": "open", "to_account": "SV99999999"}, 404, "AccountNotFound"),
        ("transfer", {"from_account": "open", "to_account": "closed"}, 422, "AccountClosed"),
        ("transfer", {"from_account": "cash", "to_account": "open"}, 403, "Forbidden"),
    ],
)
async def test_movements_refuse_accounts_they_cannot_use(
    api: AsyncClient,
    staff: dict[str, Staff],
    factory: Factory,
    idem: Idem,
    sessions: Sessions,
    kind: str,
    sides: dict[str, str],
    status: int,
    error: str,
) -> None:
    """A closed, missing or GL account on either side: refused with its reason, nothing posted."""
    opened = await factory.savings_account(100_00)
    closed = await factory.savings_account()
    async with sessions() as s, s.begin():
        await s.execute(
            update(LedgerAccount)
            .where(LedgerAccount.id == closed.id)
            .values(status="closed", closed_at=func.now())
        )
        cash = await s.scalar(
            select(LedgerAccount.code).where(LedgerAccount.id == factory.gl(CASH.number))
        )
        before = await s.scalar(select(func.count()).select_from(Journal))
    codes = {"open": opened.code, "closed": closed.code, "cash": cash}
    payload = {
        "kind": kind,
        "amount": "5.00",
        "currency": CURRENCY,
        **{side: codes.get(name, name) for side, name in sides.items()},
    }
    response = await api.post(
        "/v1/movements", json=payload, headers={**staff["teller"].headers, **idem()}
    )
    assert (response.status_code, response.json()["error"]) == (status, error), response.text
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Journal)) == before
    assert (await account_json(api, staff["teller"], opened.code))["balance"] == "100.00"


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"kind": "deposit", "amount": "-5.00"}, 422, "InvalidAmount"),
        ({"kind": "deposit", "amount": "0"}, 422, "InvalidAmount"),
        ({"kind": "deposit", "amount": "1.001"}, 422, "InvalidAmount"),
        ({"kind": "deposit", "amount": "ten"}, 422, "InvalidAmount"),
        ({"kind": "deposit", "amount": "5.00", "currency": "EUR"}, 422, "CurrencyMismatch"),
        ({"kind": "deposit", "amount": "5.00", "currency": "XXX"}, 422, "CurrencyMismatch"),
        ({"kind": "deposit", "amount": "5.00", "to_account": "SV99999999"}, 404, "AccountNotFound"),
        ({"kind": "withdrawal", "amount": "5.00"}, 422, "ValidationError"),
        ({"kind": "deposit", "amount": 5.0}, 422, "ValidationError"),
        ({"kind": "deposit", "amount": "5.00", "bogus": 1}, 422, "ValidationError"),
    ],
)
async def test_bad_movements_change_nothing(
    api: AsyncClient,
    staff: dict[str, Staff],
    factory: Factory,
    idem: Idem,
    sessions: Sessions,
    body: dict[str, object],
    status: int,
    error: str,
) -> None:
    acc = await factory.savings_account(100_00)
    payload: dict[str, object] = {"currency": CURRENCY, "to_account": acc.code, **body}
    if body["kind"] == "withdrawal":
        payload.pop("to_account")
    async with sessions() as s:
        before = await s.scalar(select(func.count()).select_from(Journal))
    response = await api.post(
        "/v1/movements", json=payload, headers={**staff["teller"].headers, **idem()}
    )
    assert (response.status_code, response.json()["error"]) == (status, error), response.text
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Journal)) == before
    assert (await account_json(api, staff["teller"], acc.code))["balance"] == "100.00"


async def test_malformed_json_and_missing_key_are_refused(
    api: AsyncClient, staff: dict[str, Staff], idem: Idem, sessions: Sessions
) -> None:
    broken = await api.post(
        "/v1/movements",
        content=b'{"kind": "deposit", ',
        headers={**staff["teller"].headers, **idem(), "Content-Type": "application/json"},
    )
    assert 400 <= broken.status_code < 500 and broken.json()["error"] == "ValidationError"
    no_key = await api.post(
        "/v1/movements",
        json={"kind": "deposit", "amount": "1.00", "currency": CURRENCY, "to_account": "SV1"},
        headers=staff["teller"].headers,
    )
    assert no_key.status_code == 422 and "Idempotency-Key" in no_key.json()["detail"]
    finance = await api.post(
        "/v1/movements", json={}, headers={**staff["finance"].headers, **idem()}
    )
    assert finance.status_code == 403
    async with sessions() as s:
        audited = await s.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action.like("POST /v1/movements%"), AuditEntry.outcome_status == 403)
        )
    assert audited and audited >= 1


async def test_no_worker_answers_202_and_the_movement_runs_later(
    settings: Settings,
    temporal_client: Client,
    staff: dict[str, Staff],
    factory: Factory,
    idem: Idem,
    sessions: Sessions,
    direct: DirectPool,
    task_queue: str,
) -> None:
    """With no worker polling, the API stops waiting after api_wait_timeout and says 202;
    the movement posts once a worker comes up."""
    acc = await factory.savings_account()
    app = create_app(
        settings.model_copy(
            update={"interactive_task_queue": task_queue, "api_wait_timeout": timedelta(seconds=1)}
        ),
        temporal_client=temporal_client,
    )
    async with app.router.lifespan_context(app), make_client(app) as api:
        started = await movement(
            api, staff["teller"], idem, kind="deposit", amount="40.00", to_account=acc.code
        )
        assert started.status_code == 202 and started.json()["stage"] == "posting"
        assert (await account_json(api, staff["teller"], acc.code))["balance"] == "0.00"
        workers = build_workers(
            temporal_client,
            settings,
            sessions,
            direct,
            interactive_queue=task_queue,
            batch_queue=f"{task_queue}-b",
        )
        async with workers[0]:
            handle = temporal_client.get_workflow_handle(started.json()["workflow_id"])
            await handle.result()
            done = await api.get(started.headers["Location"], headers=staff["teller"].headers)
        assert done.json()["stage"] == "completed"
        assert (await account_json(api, staff["teller"], acc.code))["balance"] == "40.00"


async def test_temporal_down_is_503_and_nothing_moves(
    client: AsyncClient, staff: dict[str, Staff], factory: Factory, idem: Idem
) -> None:
    acc = await factory.savings_account()
    response = await movement(
        client, staff["teller"], idem, kind="deposit", amount="40.00", to_account=acc.code
    )
    assert response.status_code == 503 and response.json()["error"] == "ProcessUnavailable"
    assert (await account_json(client, staff["teller"], acc.code))["balance"] == "0.00"


async def test_a_reversed_movement_names_its_reversal(
    api: AsyncClient, staff: dict[str, Staff], factory: Factory, idem: Idem
) -> None:
    """The movement's view reads its workflow; a later reversal of its journal must show too."""
    acc = await factory.savings_account()
    posted = await movement(
        api, staff["teller"], idem, kind="deposit", amount="40.00", to_account=acc.code
    )
    assert posted.status_code == 201, posted.text
    mid, journal = posted.json()["movement_id"], posted.json()["journal_id"]
    before = (await api.get(f"/v1/movements/{mid}", headers=staff["teller"].headers)).json()
    assert before["reversed_by_journal_id"] is None
    asked = await api.post(
        f"/v1/journals/{journal}/reversals",
        json={"reason_code": "duplicate", "reason": "keyed twice"},
        headers={**staff["teller"].headers, **idem()},
    )
    assert asked.status_code == 202, asked.text
    done = await api.post(
        f"/v1/journals/{journal}/reversals/decisions",
        json={"approve": True, "reason": "confirmed"},
        headers={**staff["branch_manager"].headers, **idem()},
    )
    assert done.status_code == 200, done.text
    reversal = done.json()["reversal_journal_id"]
    assert reversal is not None
    after = (await api.get(f"/v1/movements/{mid}", headers=staff["teller"].headers)).json()
    assert (after["stage"], after["reversed_by_journal_id"]) == ("completed", reversal)


async def test_a_decision_retried_after_a_crash_answers_the_first_decision(
    api: AsyncClient,
    staff: dict[str, Staff],
    factory: Factory,
    idem: Idem,
    sessions: Sessions,
    api_settings: Settings,
) -> None:
    """The API died after the approval ran, before keeping its answer: the retry with the same
    Idempotency-Key gets the first decision's answer (the Update's id comes from the key), not
    409 NotAwaitingDecision; money moved once."""
    from tests.api.test_idempotency import leave_as_crashed

    acc = await factory.savings_account(2_000_00)
    requested = await movement(
        api, staff["teller"], idem, kind="withdrawal", amount="700.00", from_account=acc.code
    )
    assert requested.status_code == 202, requested.text
    decide = f"/v1/movements/{requested.json()['movement_id']}/decisions"
    manager = staff["branch_manager"]
    headers = {**manager.headers, **idem()}
    first = await api.post(decide, json={"approve": True}, headers=headers)
    assert first.status_code == 200, first.text
    assert await leave_as_crashed(sessions, manager.id, headers["Idempotency-Key"], 0) == 1

    again = await api.post(decide, json={"approve": True}, headers=headers)
    assert again.status_code == 200, again.text
    assert "Idempotent-Replayed" not in again.headers  # it ran again and found the decision
    assert again.json() == first.json()
    other = await api.post(decide, json={"approve": True}, headers={**manager.headers, **idem()})
    assert other.status_code == 409 and other.json()["error"] == "NotAwaitingDecision"
    assert (await account_json(api, manager, acc.code))["balance"] == "1300.00"


async def test_a_reversal_decision_retried_after_a_crash_answers_the_first_decision(
    api: AsyncClient, staff: dict[str, Staff], factory: Factory, idem: Idem, sessions: Sessions
) -> None:
    """The API died after the reversal was approved and posted, before keeping its answer: the
    retry with the same Idempotency-Key answers that approval, and the journal is reversed once."""
    from tests.api.test_idempotency import leave_as_crashed

    acc = await factory.savings_account()
    posted = await movement(
        api, staff["teller"], idem, kind="deposit", amount="40.00", to_account=acc.code
    )
    journal = posted.json()["journal_id"]
    asked = await api.post(
        f"/v1/journals/{journal}/reversals",
        json={"reason_code": "duplicate", "reason": "keyed twice"},
        headers={**staff["teller"].headers, **idem()},
    )
    assert asked.status_code == 202, asked.text
    manager = staff["branch_manager"]
    headers = {**manager.headers, **idem()}
    decide = f"/v1/journals/{journal}/reversals/decisions"
    first = await api.post(decide, json={"approve": True, "reason": "confirmed"}, headers=headers)
    assert first.status_code == 200, first.text
    assert await leave_as_crashed(sessions, manager.id, headers["Idempotency-Key"], 0) == 1

    again = await api.post(decide, json={"approve": True, "reason": "confirmed"}, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert (await account_json(api, manager, acc.code))["balance"] == "0.00"
