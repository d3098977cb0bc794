"""Ledger and money-movement throughput, measured in one run on a throwaway database.

    .venv/bin/python bench/ledger.py [--journals N] [--movements M] [--concurrency C]

Figures, each printed as it is measured:
  a0. floor_postings_per_s: the plain-SQL floor of a. (and b0. of b.): N journals of one
     statement each that locks both accounts in id order, inserts the journal and its posting
     and moves both balances, on the real tables, no checks beyond the database's own, sent on
     a plain psycopg connection of each task's own (autocommit: the statement is the
     transaction);
  a. postings_per_s: N one-posting journals through the ledger engine as the worker posts a
     journal alone (the `post_journal` activity, a deposit's `post_movement`): the engine's
     statement on a DirectPool, C tasks each moving money between its own pair of accounts;
  a1. the same through a SQLAlchemy session (in_transaction), as a journal posts inside a larger
     transaction (disbursement, repayment): what the session costs, printed, not compared;
  b. hot_account_per_s: the same N journals as a., all cash deposits into ONE member account, so
     every journal queues on the same two rows (cash GL and the member account);
  c. movements_per_s: M MoneyMovement deposits (below the approval threshold: one posting, a
     local activity) on a local Temporal dev server and the real workers, C in flight;
  d. bare_workflows_per_s: M trivial workflows running one no-op local activity on the same server and
     an identically configured worker: the Temporal floor a movement cannot beat.

How to read them: movements/bare near 1 means Temporal dominates a movement and the ledger is
cheap; well below 1 means the ledger activity is the cost. hot/uncontended is what a single hot
row costs (1 = none). Absolute numbers depend on the machine (Postgres, the Temporal server and
this process share its cores); compare ratios from one run, not figures across machines. Finally
`verify_ledger` checks the invariants and the hot account must hold exactly 2 N x amount (the
floor's N and the engine's N).
"""

# ruff: noqa: E402
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit

# `python bench/ledger.py` puts bench/, not the root, on the path; the imports below follow.
_root = str(Path(__file__).resolve().parent.parent)
if _root not in sys.path:
    sys.path.insert(0, _root)

import psycopg
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.common import TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.accounts import create_member, open_account
from activities.db import in_transaction, make_engine, make_sessionmaker
from activities.direct import DirectPool, conninfo
from activities.ledger import engine as ledger_engine
from activities.ledger.chart import CASH, ensure_branch, ensure_chart
from activities.ledger.verify import verify_ledger
from activities.migrate import upgrade
from activities.tables import LedgerAccount
from bench.bare import BareWorkflow, noop
from bench.cpu import children_seconds, named_seconds
from bench.floor import post_floor
from schemas import search_attributes as sa
from schemas import temporal
from schemas.keyring import KeyRing
from schemas.ledger import JournalRequest, PostingLine
from schemas.members import AccountOpen, MemberCreate
from schemas.movements import MovementInput, Stage
from schemas.settings import Settings
from scripts.local_postgres import (
    DEFAULT_URL,
    create_database,
    drop_database,
    reachable,
    start_private,
)
from scripts.temporal_dev import ONE_PARTITION
from worker import GRACEFUL_SHUTDOWN, build_workers, workflow_runner
from workflows.money_movement import MoneyMovementWorkflow

A = LedgerAccount
AMOUNT = 1_00  # 1.00 USD per journal and per movement
# A broken workflow retries its task forever; a bench run fails instead of hanging.
RUN_LIMIT = timedelta(minutes=5)


class RetryCounter(logging.Handler):
    """Counts in_transaction's deadlock/serialization retries (it logs one warning per retry)."""

    count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


Sessions = async_sessionmaker[AsyncSession]


async def new_account(sessions: Sessions) -> int:
    async def work(session: AsyncSession) -> int:
        member = await create_member(
            session,
            MemberCreate(
                first_name="Bench",
                last_name=uuid.uuid4().hex[:8],
                date_of_birth=date(1990, 1, 1),
                branch_code="HQ",
            ),
        )
        return (await open_account(session, member, AccountOpen(currency="USD"))).id

    return await in_transaction(sessions, work)


def transfer(journal_id: str, debit: int, credit: int, amount: int) -> JournalRequest:
    line = PostingLine(
        debit_account_id=debit, credit_account_id=credit, amount_minor=amount, currency="USD"
    )
    return JournalRequest(
        journal_id=journal_id, kind="transfer", value_date=date.today(), postings=[line]
    )


async def post(sessions: Sessions, journal_id: str, debit: int, credit: int, amount: int) -> None:
    """A journal inside a SQLAlchemy transaction (and the bench's set-up postings)."""
    req = transfer(journal_id, debit, credit, amount)
    await in_transaction(sessions, lambda s: ledger_engine.post_journal(s, req))


async def closed_loop(
    label: str, total: int, tasks: int, one: Callable[[int, int], Awaitable[None]]
) -> float:
    """Run one(task, i) `total` times from `tasks` tasks, each waiting for its previous call;
    print and return calls per second of wall time, with the CPU each process spent per call:
    this one (client, engine, worker), the Temporal dev server it started, Postgres."""

    async def run(task: int) -> None:
        for i in range(task, total, tasks):
            await one(task, i)

    def meters() -> tuple[float, ...]:
        return time.perf_counter(), time.process_time(), children_seconds(os.getpid()), \
            named_seconds("postgres")  # fmt: skip

    before = meters()
    await asyncio.gather(*(run(t) for t in range(tasks)))
    wall, cpu, server, postgres = (b - a for a, b in zip(before, meters(), strict=True))
    if label:
        per = [f"{1000 * x / total:.1f}" for x in (cpu, server, postgres)]
        print(
            f"{label}: {total} in {wall:.1f}s, {tasks} in flight: {total / wall:.1f}/s"
            f" (ms CPU each: this process {per[0]}, Temporal server {per[1]}, Postgres {per[2]})",
            flush=True,
        )
    return total / wall


def deposit(i: int, cash: int, account: int) -> MovementInput:
    return MovementInput(
        movement_id=f"BENCH{i:07d}",
        kind="deposit",
        debit_account_id=cash,
        credit_account_id=account,
        debit_account=str(cash),
        credit_account=str(account),
        amount_minor=AMOUNT,
        currency="USD",
        scale=2,
        value_date=date.today(),
        branch="HQ",
        requested_by_id=1,
        requested_by="bench",
        approval_threshold_minor=500_00,
        approval_timeout=timedelta(hours=1),
    )


async def measure_workflows(
    client: Client,
    settings: Settings,
    sessions: Sessions,
    direct: DirectPool,
    cash: int,
    m: int,
    c: int,
) -> tuple[float, float, list[int]]:
    """c. and d., each after an untimed warm-up of C runs (the sandbox's first imports)."""
    accounts = [await new_account(sessions) for _ in range(c)]
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    workers = build_workers(
        client,
        settings,
        sessions,
        direct,
        interactive_queue=queue,
        batch_queue=queue + "b",
    )
    workers.append(  # configured like the interactive worker of build_workers
        Worker(
            client,
            task_queue=queue + "-bare",
            workflows=[BareWorkflow],
            activities=[noop],
            graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
            workflow_runner=workflow_runner("bench.bare"),
        )
    )
    incomplete: list[int] = []

    def started_as_the_api_does(i: int) -> TypedSearchAttributes:
        """The search attributes the API starts a movement with (both kinds of run get them)."""
        return sa.at_start(
            "MoneyMovement", Stage.POSTING.value, branch="HQ", amount_minor=AMOUNT,
            currency="USD", business_id=f"BENCH{i:07d}",
        )  # fmt: skip

    async def movement(task: int, i: int) -> None:
        state = await client.execute_workflow(
            MoneyMovementWorkflow.run,
            deposit(i, cash, accounts[task]),
            id=f"movement-BENCH{i:07d}",
            task_queue=queue,
            execution_timeout=RUN_LIMIT,
            search_attributes=started_as_the_api_does(i),
        )
        if state.stage != Stage.COMPLETED:
            incomplete.append(i)

    async def bare(task: int, i: int) -> None:
        await client.execute_workflow(
            BareWorkflow.run,
            i,
            id=f"bare-{i}",
            task_queue=queue + "-bare",
            execution_timeout=RUN_LIMIT,
            search_attributes=started_as_the_api_does(i),
        )

    async with AsyncExitStack() as stack:
        for w in workers:
            await stack.enter_async_context(w)
        await closed_loop("", c, c, lambda t, i: movement(t, m + i))
        movements = await closed_loop("c. money movements (deposits)", m, c, movement)
        await closed_loop("", c, c, lambda t, i: bare(t, m + i))
        bares = await closed_loop("d. bare workflows (one no-op local activity)", m, c, bare)
    if incomplete:
        print(f"   {len(incomplete)} movements did not complete, e.g. {incomplete[:3]}")
    return movements, bares, accounts


async def balance(sessions: Sessions, ids: list[int]) -> int:
    async with sessions() as session:
        total = await session.scalar(
            select(func.sum(A.credits_posted_minor - A.debits_posted_minor)).where(A.id.in_(ids))
        )
    return int(total or 0)


async def bench(url: str, n: int, m: int, c: int) -> int:
    retries = RetryCounter()
    logging.getLogger("activities.db").addHandler(retries)
    settings = Settings(database_url=url, payload_keys=KeyRing.generate_entry("bench"))
    engine = make_engine(settings, pool_size=max(10, c), pre_ping=False)  # as worker.py
    sessions = make_sessionmaker(engine)
    direct = DirectPool(settings.sqlalchemy_url, size=max(10, c))  # as worker.py
    floor_conns = [
        await psycopg.AsyncConnection.connect(conninfo(url), autocommit=True) for _ in range(c)
    ]

    async def chart(session: AsyncSession) -> dict[str, int]:
        await ensure_branch(session, "HQ", "Head office", "UTC")
        return await ensure_chart(session, "USD")

    cash = (await in_transaction(sessions, chart))[CASH.number]
    pairs = [(await new_account(sessions), await new_account(sessions)) for _ in range(c)]
    hot = await new_account(sessions)
    for k, (source, _) in enumerate(pairs):
        await post(sessions, f"bench-fund-{k}", cash, source, 3 * n * AMOUNT)

    async def uncontended(task: int, i: int) -> None:
        await ledger_engine.post_journal(direct, transfer(f"bench-a-{i}", *pairs[task], AMOUNT))

    async def in_session(task: int, i: int) -> None:
        await post(sessions, f"bench-s-{i}", *pairs[task], AMOUNT)

    async def contended(task: int, i: int) -> None:
        await ledger_engine.post_journal(direct, transfer(f"bench-b-{i}", cash, hot, AMOUNT))

    async def uncontended_floor(task: int, i: int) -> None:
        await post_floor(floor_conns[task], f"bench-fa-{i}", *pairs[task], AMOUNT)

    async def contended_floor(task: int, i: int) -> None:
        await post_floor(floor_conns[task], f"bench-fb-{i}", cash, hot, AMOUNT)

    floor = await closed_loop("a0. plain-SQL floor, uncontended", n, c, uncontended_floor)
    postings = await closed_loop("a. uncontended postings (DirectPool)", n, c, uncontended)
    await closed_loop("a1. uncontended postings in a SQLAlchemy session", n, c, in_session)
    floor_hot = await closed_loop("b0. plain-SQL floor, one hot account", n, c, contended_floor)
    hot_rate = await closed_loop("b. postings into one hot account (DirectPool)", n, c, contended)
    for conn in floor_conns:
        await conn.close()
    print(f"   deadlock/serialization retries so far: {retries.count}")
    env = await WorkflowEnvironment.start_local(
        dev_server_extra_args=ONE_PARTITION,
        data_converter=temporal.data_converter(settings),
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        search_attributes=sa.ALL,
        ui=False,
        dev_server_log_level="error",
    )
    try:
        movements, bare, mv_accounts = await measure_workflows(
            env.client, settings, sessions, direct, cash, m, c
        )
    finally:
        await env.shutdown()
    print(f"movements_per_s / bare_workflows_per_s = {movements / bare:.2f}")
    print(f"hot_account_per_s / postings_per_s = {hot_rate / postings:.2f}")
    print(f"postings_per_s / floor = {postings / floor:.2f}; hot_account_per_s / floor = "
          f"{hot_rate / floor_hot:.2f}")  # fmt: skip

    async with sessions() as session, session.begin():
        report = await verify_ledger(session)
    for check in (c for c in report.checks if not c.ok):
        print(f"   FAILED {check.name}: {check.detail}")
    print(f"ledger verify: {'ok' if report.ok else 'FAILED'}")
    hot_ok = await balance(sessions, [hot]) == 2 * n * AMOUNT  # the floor's and the engine's
    mv_ok = await balance(sessions, mv_accounts) == (m + c) * AMOUNT  # warm-ups included
    print(
        f"exactly once: hot account == 2 N x amount: {hot_ok}; movements == (M + C) x amount: {mv_ok}"
    )
    await direct.close()
    await engine.dispose()
    print(
        f"ledger postings_per_s={postings:.1f} hot_account_per_s={hot_rate:.1f}"
        f" movements_per_s={movements:.1f} bare_workflows_per_s={bare:.1f}"
        f" floor_postings_per_s={floor:.1f} postings_ratio={postings / floor:.2f}"
        f" floor_hot_per_s={floor_hot:.1f} hot_ratio={hot_rate / floor_hot:.2f}"
    )
    return 0 if report.ok and hot_ok and mv_ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description="ledger and money-movement throughput")
    parser.add_argument("--journals", type=int, default=1500, help="N, for a. and b.")
    parser.add_argument("--movements", type=int, default=300, help="M, for c. and d.")
    parser.add_argument("--concurrency", type=int, default=8, help="C, calls in flight")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still drop the database
    env_url = os.environ.get("BANKFLOW_DATABASE_URL") or os.environ.get("DATABASE_URL")
    server = Settings(database_url=env_url or DEFAULT_URL).sqlalchemy_url
    private: tuple[Path, subprocess.Popen[bytes]] | None = None
    if not reachable(server):
        tmp = Path(tempfile.mkdtemp(prefix="bankflow-bench-pg-"))
        server, proc = start_private(tmp / "data")
        private = (tmp, proc)
    name = f"bankflow_bench_{uuid.uuid4().hex[:10]}"
    try:
        url = create_database(server, name)
        upgrade(url)
        print(f"database {name} on {urlsplit(url).netloc}", flush=True)
        return asyncio.run(bench(url, args.journals, args.movements, args.concurrency))
    finally:
        drop_database(server, name)
        if private:
            private[1].terminate()
            private[1].wait(30)
            shutil.rmtree(private[0], ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
