"""Ledger and money-movement throughput, measured in one run on a throwaway database.

    .venv/bin/python bench/ledger.py [--journals N] [--movements M] [--concurrency C]
        [--book B] [--history H]

Every figure runs on a ledger that already holds B member accounts (default 10,000) with a month of
activity, seeded set-based (activities/seed/synthetic), and H journals (default 5,000) posted into
them through the engine, then analyzed: Postgres plans each statement as it does on a real book.
On nearly empty tables it scans their few pages whole, and the foreign-key checks of every
connection keep the plans they made then (a sequential scan of `journals` per posting, however
large the table grows during the run).

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
import uuid
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

# `python bench/ledger.py` puts bench/, not the root, on the path; the imports below follow.
_root = str(Path(__file__).resolve().parent.parent)
if _root not in sys.path:
    sys.path.insert(0, _root)

import psycopg
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from temporalio.testing import WorkflowEnvironment

from activities.db import in_transaction, make_engine, make_sessionmaker
from activities.direct import DirectPool, conninfo
from activities.ledger import engine as ledger_engine
from activities.ledger.chart import CASH, ensure_branch, ensure_chart
from activities.ledger.verify import verify_ledger
from activities.migrate import upgrade
from activities.savings import create_product
from activities.seed.synthetic import seed_synthetic_accounts
from activities.tables import LedgerAccount
from bench.floor import post_floor
from bench.kit import AMOUNT, Sessions, closed_loop, new_account
from bench.movements import measure_workflows
from schemas import search_attributes as sa
from schemas import temporal
from schemas.keyring import KeyRing
from schemas.ledger import JournalRequest, PostingLine
from schemas.savings import ProductCreate
from schemas.settings import Settings
from scripts.local_postgres import (
    DEFAULT_URL,
    create_database,
    drop_database,
    reachable,
    start_private,
)
from scripts.temporal_dev import ONE_PARTITION

A = LedgerAccount


class RetryCounter(logging.Handler):
    """Counts in_transaction's deadlock/serialization retries (it logs one warning per retry)."""

    count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


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


async def balance(sessions: Sessions, ids: list[int]) -> int:
    async with sessions() as session:
        total = await session.scalar(
            select(func.sum(A.credits_posted_minor - A.debits_posted_minor)).where(A.id.in_(ids))
        )
    return int(total or 0)


BOOK_PRODUCT = ProductCreate(
    code="BENCH", name="Bench savings", currency="USD", annual_rate=Decimal("0.0365"),
    min_balance="10.00", withholding_tax_rate=Decimal("0.15"),
)  # fmt: skip


async def seed_book(
    sessions: Sessions,
    engine: AsyncEngine,
    direct: DirectPool,
    cash: int,
    accounts: int,
    history: int,
    tasks: int,
) -> None:
    """`accounts` funded member accounts, `history` deposits into them through the engine, then
    VACUUM ANALYZE (see the module's docstring)."""  # fmt: skip
    if accounts:

        async def seed(session: AsyncSession) -> tuple[int, int]:
            await create_product(session, BOOK_PRODUCT)
            return await seed_synthetic_accounts(
                session, tag="BOOK-", count=accounts, product_code=BOOK_PRODUCT.code,
                period_start=date.today().replace(day=1) - timedelta(days=31),
            )  # fmt: skip

        first, _ = await in_transaction(sessions, seed)

        async def deposit_into_book(task: int, i: int) -> None:
            into = first + i % accounts
            await ledger_engine.post_journal(direct, transfer(f"book-{i}", cash, into, AMOUNT))

        await closed_loop("", history, tasks, deposit_into_book)
    async with engine.connect() as conn:
        await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
            text("VACUUM ANALYZE")
        )
    print(f"a book of {accounts:,} member accounts and {history:,} journals, analyzed", flush=True)


async def bench(url: str, n: int, m: int, c: int, book: int, history: int) -> int:
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
    await seed_book(sessions, engine, direct, cash, book, history if book else 0, c)
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
    parser.add_argument("--book", type=int, default=10_000, help="B, member accounts seeded")
    parser.add_argument("--history", type=int, default=5_000, help="H, journals posted into them")
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
        return asyncio.run(
            bench(url, args.journals, args.movements, args.concurrency, args.book, args.history)
        )
    finally:
        drop_database(server, name)
        if private:
            private[1].terminate()
            private[1].wait(30)
            shutil.rmtree(private[0], ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
