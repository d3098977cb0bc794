"""Real faults under the request pipeline: an API process that died mid-request, and a private
Postgres stopped and started again while requests run. Money posts once, no retry is blocked
past its bound, an answer after the money moved says so, and one before is a retryable 503."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from httpx import AsyncClient, Response
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.db import in_transaction, make_engine, make_sessionmaker
from activities.direct import DirectPool
from activities.ledger.chart import ensure_branch, ensure_chart
from activities.ledger.verify import verify_ledger
from activities.migrate import upgrade
from activities.tables import AuditEntry, IdempotencyRecord, Journal, LedgerAccount
from api.app import create_app
from api.routes.movements import WORKFLOW_PREFIX, movement_id
from schemas.settings import Settings
from scripts.local_postgres import _as_owner, _bin, provision, start_private
from tests.api.conftest import Staff, make_client, new_staff
from tests.conftest import BRANCH, CURRENCY, Factory
from worker import build_workers

Sessions = async_sessionmaker[AsyncSession]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivatePostgres:
    """A cluster of this module's own, so stopping it disturbs nobody else's tests."""

    def __init__(self, root: Path) -> None:
        self.data = root / "data"
        self.port = _free_port()
        self.owner = "postgres" if os.geteuid() == 0 else None  # as start_private runs it
        self.server_url, self.proc = start_private(self.data, self.port)

    def stop(self) -> None:
        """An immediate shutdown: connections die as in a crash; start() runs recovery."""
        subprocess.run(
            _as_owner(
                [_bin("pg_ctl"), "-D", str(self.data), "stop", "-m", "immediate"], self.owner
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self.proc.wait(30)

    def start(self) -> None:
        """Start it again and wait until crash recovery is over and it answers queries."""
        self.server_url, self.proc = start_private(self.data, self.port)
        admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        for _ in range(300):
            try:
                with psycopg.connect(admin, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:  # "not yet accepting connections" during recovery
                time.sleep(0.1)
        raise AssertionError("the private Postgres did not finish recovery")


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    root = Path(tempfile.mkdtemp(prefix="bankflow-faults-"))
    pg = PrivatePostgres(root)
    yield pg
    if pg.proc.poll() is None:
        pg.stop()
    shutil.rmtree(root, ignore_errors=True)


@dataclass
class Stack:
    pg: PrivatePostgres
    url: str
    sessions: Sessions
    factory: Factory
    client: AsyncClient
    teller: Staff


@pytest.fixture
async def stack(
    private_pg: PrivatePostgres, temporal_client: Client, tmp_path: Path
) -> AsyncIterator[Stack]:
    """API and worker on the private Postgres, with a one-second idempotency lease."""
    # Owner and runtime roles, as everywhere: the faults are met by the least-privileged app.
    database = await asyncio.to_thread(
        provision, private_pg.server_url, f"faults_{uuid.uuid4().hex[:8]}"
    )
    await asyncio.to_thread(upgrade, database.owner_url, runtime_role=database.runtime)
    url = database.runtime_url
    queue = f"tq-faults-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        database_url=url,
        interactive_task_queue=queue,
        idempotency_lease=timedelta(seconds=1),
        idempotency_wait=timedelta(seconds=10),
        audit_spool_dir=tmp_path / "audit-spool",
    )
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)

    async def setup(session: AsyncSession) -> dict[str, int]:
        await ensure_branch(session, BRANCH, "Head office", "UTC")
        return await ensure_chart(session, CURRENCY)

    chart = await in_transaction(sessions, setup)
    teller = await new_staff(sessions, settings, "teller")
    app = create_app(settings, temporal_client=temporal_client)
    async with AsyncExitStack() as stack:
        direct = await stack.enter_async_context(DirectPool(settings.sqlalchemy_url, size=10))
        workers = build_workers(
            temporal_client,
            settings,
            sessions,
            direct,
            interactive_queue=queue,
            batch_queue=f"{queue}-b",
        )
        for w in workers:
            await stack.enter_async_context(w)
        await stack.enter_async_context(app.router.lifespan_context(app))
        client = await stack.enter_async_context(make_client(app))
        yield Stack(private_pg, url, sessions, Factory(sessions, chart), client, teller)
    if private_pg.proc.poll() is not None:  # a test failed while Postgres was down
        private_pg.start()
    await engine.dispose()


async def deposit(stack: Stack, account: str, key: str) -> Response:
    return await stack.client.post(
        "/v1/movements",
        json={"kind": "deposit", "amount": "40.00", "currency": CURRENCY, "to_account": account},
        headers=stack.teller.headers | {"Idempotency-Key": key},
    )


async def posted_once(stack: Stack, account_id: int, journal_id: str) -> None:
    async with stack.sessions() as session:
        account = await session.get(LedgerAccount, account_id)
        assert account is not None and account.credits_posted_minor == 40_00
        journals = await session.scalar(
            select(func.count()).select_from(Journal).where(Journal.id == journal_id)
        )
        assert journals == 1
    async with stack.sessions() as session:
        assert (await verify_ledger(session)).ok


async def audit_outcomes(stack: Stack, key: str) -> list[tuple[int, str]]:
    async with stack.sessions() as session:
        rows = await session.scalars(
            select(AuditEntry).where(AuditEntry.idempotency_key == key).order_by(AuditEntry.at)
        )
        return [(row.outcome_status, row.outcome) for row in rows]


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(600):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


async def test_a_retry_after_the_api_died_answers_from_the_workflow(stack: Stack) -> None:
    """The API posted the deposit and died before keeping the answer: the retry waits for the
    lapsed claim, runs again, meets the finished workflow and answers with its result."""
    account = await stack.factory.savings_account()
    key = uuid.uuid4().hex
    first = await deposit(stack, account.code, key)
    assert first.status_code == 201, first.text
    async with stack.sessions() as session, session.begin():
        await session.execute(
            text(
                "UPDATE idempotency_records SET status_code = NULL, response_body = NULL, "
                "owner = gen_random_uuid(), lease_expires_at = now() + interval '1 second' "
                "WHERE key = :key"
            ),
            {"key": key},
        )
    retry = await deposit(stack, account.code, key)
    assert retry.status_code == 201, retry.text
    assert "Idempotent-Replayed" not in retry.headers
    assert retry.json()["journal_id"] == first.json()["journal_id"]
    assert retry.json()["stage"] == "completed"
    await posted_once(stack, account.id, first.json()["journal_id"])


async def test_database_down_before_any_workflow_is_a_retryable_503(
    stack: Stack, temporal_client: Client
) -> None:
    account = await stack.factory.savings_account()
    key = uuid.uuid4().hex
    stack.pg.stop()
    refused = await deposit(stack, account.code, key)
    read = await stack.client.get(f"/v1/accounts/{account.code}", headers=stack.teller.headers)
    for r in (refused, read):
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "DatabaseUnavailable" and r.headers["Retry-After"] == "1"
    handle = temporal_client.get_workflow_handle(
        WORKFLOW_PREFIX + movement_id(stack.teller.id, key)
    )
    with pytest.raises(RPCError) as missing:
        await handle.describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND  # nothing was started

    stack.pg.start()
    retry = await deposit(stack, account.code, key)
    assert retry.status_code == 201, retry.text
    await posted_once(stack, account.id, retry.json()["journal_id"])
    # The 503 was audited too: spooled while Postgres was down, flushed once it was back.
    assert await audit_outcomes(stack, key) == [(503, "DatabaseUnavailable"), (201, "ok")]


async def test_postgres_restart_while_the_answer_is_stored(stack: Stack) -> None:
    """Postgres goes down between the posting and the store of the answer: the client still
    hears that the money moved, and its retry, once Postgres is back, answers the same."""
    account = await stack.factory.savings_account()
    key = uuid.uuid4().hex
    locker = await psycopg.AsyncConnection.connect(stack.url.replace("+psycopg", ""))
    # The posting waits on the account's row until the claim's row is held as well: a deposit
    # is quicker than this test's polling, and would otherwise store its answer first.
    poster_gate = await psycopg.AsyncConnection.connect(stack.url.replace("+psycopg", ""))
    await poster_gate.execute(
        "SELECT 1 FROM ledger_accounts WHERE id = %s FOR UPDATE", (account.id,)
    )
    first_request = asyncio.create_task(deposit(stack, account.code, key))

    async def claimed() -> bool:
        row = await (
            await locker.execute("SELECT 1 FROM idempotency_records WHERE key = %s", (key,))
        ).fetchone()
        return row is not None

    await until(claimed, "the claim")
    # Hold the claim's row, so the API's store of its answer waits on it ...
    await locker.execute("SELECT 1 FROM idempotency_records WHERE key = %s FOR UPDATE", (key,))
    await poster_gate.rollback()
    await poster_gate.close()

    async def storing() -> bool:
        async with stack.sessions() as session:
            waiting = await session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE 'UPDATE idempotency_records SET status_code%'"
                )
            )
        return bool(waiting)

    await until(storing, "the store of the answer")
    # ... then Postgres goes down under it.
    await asyncio.to_thread(stack.pg.stop)
    first = await first_request
    assert first.status_code == 201, first.text  # never a 500 for money that moved
    journal_id = first.json()["journal_id"]
    await asyncio.to_thread(stack.pg.start)
    await locker.close()
    async with stack.sessions() as session:
        record = await session.scalar(select(IdempotencyRecord).where(IdempotencyRecord.key == key))
        assert record is not None and record.status_code is None  # the answer was not kept

    retry = await deposit(stack, account.code, key)
    assert retry.status_code == 201, retry.text
    assert retry.json()["journal_id"] == journal_id
    await posted_once(stack, account.id, journal_id)
    assert await audit_outcomes(stack, key) == [(201, "ok"), (201, "ok")]
