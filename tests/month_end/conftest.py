"""Month-end harness: a fresh database per test (a month-end run touches every savings account
in its database, so tests must not see each other's), the real workers on it, and helpers to
create products and accounts with dated history through the real code paths."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Generic, TypeVar

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowHandle
from typer.testing import CliRunner, Result

from activities.accounts import create_member, open_account
from activities.db import in_transaction, make_engine, make_sessionmaker
from activities.direct import DirectPool
from activities.ledger import engine as ledger_engine
from activities.ledger.chart import CASH, ensure_branch, ensure_chart
from activities.ledger.verify import verify_ledger
from activities.migrate import upgrade
from activities.savings import create_product, enroll_account
from cli.main import app
from schemas.ledger import JournalRequest, PostingLine, VerifyReport
from schemas.members import AccountOpen, MemberCreate
from schemas.month_end import MonthEndInput, MonthEndSummary
from schemas.savings import ProductCreate
from schemas.settings import Settings, get_settings
from scripts.local_postgres import drop_app_database, provision
from tests.api.conftest import api_app, api_settings, client, staff  # noqa: F401  (API tests)
from worker import build_workers
from workflows.month_end_interest import MonthEndInterestWorkflow

FINANCE = "finance@bankflow.example"


S = TypeVar("S")


@dataclass
class Stack:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    engine: AsyncEngine
    chart: dict[str, int]
    client: Client
    batch_queue: str
    tag: str

    async def product(self, **terms: Any) -> str:
        code = f"P{uuid.uuid4().hex[:8].upper()}"
        body = ProductCreate(code=code, name=code, currency="USD", **terms)
        await in_transaction(self.sessions, lambda s: create_product(s, body))
        return code

    async def account(self, product: str, opened_on: date, deposits: list[tuple[date, int]]) -> int:
        """A savings account on `product`, with cash deposits (or withdrawals if negative)."""

        async def work(session: AsyncSession) -> tuple[int, str]:
            member = await create_member(
                session,
                MemberCreate(
                    first_name="Saver",
                    last_name=uuid.uuid4().hex[:8],
                    date_of_birth=date(1990, 1, 1),
                    branch_code="HQ",
                ),
            )
            account = await open_account(session, member, AccountOpen(currency="USD"))
            await enroll_account(session, product, account.code, opened_on)
            return account.id, account.code

        account_id, _ = await in_transaction(self.sessions, work)
        for value_date, amount in deposits:
            await self.move(account_id, value_date, amount)
        return account_id

    async def move(self, account_id: int, value_date: date, amount: int) -> None:
        cash = self.chart[CASH.number]
        debit, credit = (cash, account_id) if amount > 0 else (account_id, cash)
        req = JournalRequest(
            journal_id=f"test-{uuid.uuid4().hex}",
            kind="deposit" if amount > 0 else "withdrawal",
            value_date=value_date,
            postings=[
                PostingLine(
                    debit_account_id=debit,
                    credit_account_id=credit,
                    amount_minor=abs(amount),
                    currency="USD",
                )
            ],
        )
        await in_transaction(self.sessions, lambda s: ledger_engine.post_journal(s, req))

    async def balance(self, account_id: int) -> int:
        async with self.sessions() as s:
            value = await s.scalar(
                text("SELECT credits_posted_minor - debits_posted_minor FROM ledger_accounts "
                     "WHERE id = :id"), {"id": account_id})  # fmt: skip
            return int(value or 0)

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.sessions() as s:
            return await s.scalar(text(sql), params)

    async def verify(self) -> VerifyReport:
        async with self.sessions() as s, s.begin():
            return await verify_ledger(s)

    def workflow_id(self, period: str) -> str:
        return f"{self.tag}-month-end-{period}"

    async def start(
        self, period: str, **options: Any
    ) -> WorkflowHandle[MonthEndInterestWorkflow, MonthEndSummary]:
        inp = MonthEndInput(period=period, notify=[FINANCE], **options)
        return await self.client.start_workflow(
            MonthEndInterestWorkflow.run,
            inp,
            id=self.workflow_id(period),
            task_queue=self.batch_queue,
        )

    async def run(self, period: str, **options: Any) -> MonthEndSummary:
        return await (await self.start(period, **options)).result()


async def run_cli(temporal: Client, batch_queue: str, *args: str) -> Result:
    """`bankflow ARGS` as an operator runs it, against this test's Temporal server and batch
    queue. In a thread: the command runs an event loop of its own, while the test's loop keeps
    the workers going."""
    env = {
        "BANKFLOW_TEMPORAL_ADDRESS": temporal.service_client.config.target_host,
        "BANKFLOW_TEMPORAL_NAMESPACE": temporal.namespace,
        "BANKFLOW_BATCH_TASK_QUEUE": batch_queue,
    }

    def invoke() -> Result:
        get_settings.cache_clear()  # the command reads its settings from this environment
        try:
            return CliRunner().invoke(app, list(args), env=env)
        finally:
            get_settings.cache_clear()

    return await asyncio.to_thread(invoke)


async def fresh_database(pg_server: str) -> tuple[str, str]:
    """A migrated database of its own; the URL is its runtime role's, as the services use."""
    database = provision(pg_server, f"bankflow_me_{uuid.uuid4().hex[:10]}")
    upgrade(database.owner_url, runtime_role=database.runtime)
    return database.name, database.runtime_url


@pytest.fixture
async def stack(pg_server: str, temporal_client: Client) -> AsyncIterator[Stack]:
    """A fresh database with the chart, the real workers on fresh queues; no worker if the
    test wants to run its own (see `bare_stack`)."""
    async with _stack(pg_server, temporal_client, with_worker=True, kind=Stack) as s:
        yield s


@pytest.fixture
async def bare_stack(pg_server: str, temporal_client: Client) -> AsyncIterator[Stack]:
    async with _stack(pg_server, temporal_client, with_worker=False, kind=Stack) as s:
        yield s


class _stack(Generic[S]):
    """A fresh database with the chart and, `with_worker`, the real workers on fresh queues;
    `kind` is the suite's Stack class (the daily loan job's extends this one's fields)."""

    def __init__(
        self, pg_server: str, temporal: Client, *, with_worker: bool, kind: Callable[..., S]
    ) -> None:
        self.pg_server, self.client, self.with_worker = pg_server, temporal, with_worker
        self.kind = kind
        self.exit = AsyncExitStack()

    async def __aenter__(self) -> S:
        self.name, url = await fresh_database(self.pg_server)
        settings = Settings(database_url=url)
        self.engine = engine = make_engine(settings, pool_size=5)
        sessions = make_sessionmaker(engine)

        async def setup(session: AsyncSession) -> dict[str, int]:
            await ensure_branch(session, "HQ", "Head office", "UTC")
            return await ensure_chart(session, "USD")

        chart = await in_transaction(sessions, setup)
        tag = f"t{uuid.uuid4().hex[:8]}"
        queue = f"tq-{tag}"
        self.stack = self.kind(
            settings, sessions, engine, chart, self.client, f"{queue}-batch", tag
        )
        if self.with_worker:
            direct = await self.exit.enter_async_context(
                DirectPool(settings.sqlalchemy_url, size=5)
            )
            for w in build_workers(
                self.client,
                settings,
                sessions,
                direct,
                interactive_queue=queue,
                batch_queue=f"{queue}-batch",
            ):
                await self.exit.enter_async_context(w)
        return self.stack

    async def __aexit__(self, *exc: object) -> None:
        await self.exit.aclose()
        await self.engine.dispose()
        drop_app_database(self.pg_server, self.name)


__all__ = ["FINANCE", "Decimal", "Stack", "_stack", "run_cli"]
