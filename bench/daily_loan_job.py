"""The daily loan job at scale: loans serviced per second for one business date, in one run.

    .venv/bin/python bench/daily_loan_job.py [--loans 20000] [--batch-size 2000] [--concurrency 3]
        [--server postgresql+psycopg://postgres@127.0.0.1:5432/bankflow]

On a throwaway database it makes three template loans through the real code path (an accrual
loan months in arrears, an accrual loan not yet due, a cash loan in arrears), copies them with
set-based SQL to N loans in all (with their disbursement journals), marks every loan serviced
through the day before D (as a daily cadence leaves them), then measures:
  floor_s: the least physical work servicing every loan for D takes, in one transaction on the
           real tables (their constraints, indexes, foreign keys and triggers): one set-based
           UPDATE of every loan (serviced_through and the counters), one `loan_transactions` row
           per loan (its accrual), one journal with one aggregated GL posting and the two GL
           balance updates; no Temporal, no Python per loan, no arrears or interest arithmetic
           (a stand-in amount). Then rolled back and vacuumed, so the workflow starts from the
           same data;
  wall_s:  the DailyLoanJob workflow for D on a local Temporal dev server with the real workers,
           from start to result (arrears, penalties, accrual, journals, PAR snapshot);
  rerun_s: the same date started again (it must post nothing);
  catchup_s: (with --catchup-days K) a run for D+K servicing K days per loan at once.
It checks that every loan is serviced through D, that the re-run left the date's totals as they
were and posted nothing itself, and that the ledger verifies. Figures depend on the machine and
on whatever else runs on it; compare the ratio. The last line reads
`daily-loan-job loans=N wall_s=X floor_s=Y ratio=Z loans_per_s=W rerun_s=V`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from contextlib import AsyncExitStack
from datetime import date, timedelta
from pathlib import Path

_root = str(Path(__file__).resolve().parent.parent)
if _root not in sys.path:
    sys.path.insert(0, _root)

from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from activities.daily_loan_batch import ACTIVE, JOURNAL_KIND  # noqa: E402
from activities.db import in_transaction, make_engine, make_sessionmaker  # noqa: E402
from activities.ledger.batch import content_hash  # noqa: E402
from activities.ledger.chart import (  # noqa: E402
    INTEREST_INCOME,
    INTEREST_RECEIVABLE,
    ensure_branch,
    ensure_chart,
    gl_code,
)
from activities.ledger.verify import verify_ledger  # noqa: E402
from activities.migrate import upgrade  # noqa: E402
from bench import pgstats  # noqa: E402
from bench.kit import run_workers  # noqa: E402
from schemas import search_attributes, temporal  # noqa: E402
from schemas.daily_loan_job import DailyJobInput, DailyJobSummary  # noqa: E402
from schemas.keyring import KeyRing  # noqa: E402
from schemas.settings import Settings  # noqa: E402
from scripts.local_postgres import DEFAULT_URL, create_database, drop_database  # noqa: E402
from scripts.temporal_dev import ONE_PARTITION  # noqa: E402
from tests.conftest import Factory  # noqa: E402
from tests.daily_loan_job.seed import clone_loans  # noqa: E402
from tests.loans.book import disburse  # noqa: E402
from tests.loans.conftest import LoanKit  # noqa: E402
from worker import settle_heap  # noqa: E402
from workflows.daily_loan_job import DailyLoanJobWorkflow  # noqa: E402

DAY = date(2026, 6, 30)
TEMPLATES = (  # (accounting, penalty rate, disbursed on, principal, repayments)
    ("accrual", "36.5", date(2026, 1, 1), "1200.00", 12),
    ("accrual", "36.5", DAY - timedelta(days=20), "5000.00", 24),
    ("cash", "20", date(2026, 3, 10), "700.00", 6),
)


async def make_templates(kit: LoanKit) -> list[int]:
    officer = await kit.staff("loan_officer")
    ids = []
    for accounting, rate, disbursed_on, principal, repayments in TEMPLATES:
        product = await kit.product(penalty_rate=rate, accounting=accounting)
        member = await kit.member(1_000_00)
        inp = await kit.register(officer, product, member, principal, repayments=repayments)

        async def book(
            session: AsyncSession, n: str = inp.loan_number, d: date = disbursed_on
        ) -> None:
            await disburse(session, n, d)

        await in_transaction(kit.sessions, book)
        ids.append(inp.loan_id)
    return ids


async def seed(sessions: async_sessionmaker[AsyncSession], settings: Settings, n: int) -> None:
    async def chart(session: AsyncSession) -> dict[str, int]:
        await ensure_branch(session, "HQ", "Head office", "UTC")
        return await ensure_chart(session, "USD")

    kit = LoanKit(sessions, Factory(sessions, await in_transaction(sessions, chart)), settings)
    templates = await make_templates(kit)
    per = (n - len(templates)) // len(templates)
    for i, template in enumerate(templates):
        copies = per if i else n - len(templates) - per * (len(templates) - 1)

        async def work(session: AsyncSession, t: int = template, c: int = copies) -> int:
            return await clone_loans(session, t, c, f"B{t}")

        await in_transaction(sessions, work)

    async def cadence(session: AsyncSession) -> None:
        await session.execute(
            text("UPDATE loans SET serviced_through = :d WHERE state = 'active'"),
            {"d": DAY - timedelta(days=1)},
        )

    await in_transaction(sessions, cadence)


FLOOR_JOURNAL = "daily-loan-floor"
# The floor's statements after the count: the journal and its one posting (both need the count
# first, for the content hash), every loan updated and its accrual row written in one statement,
# then the two GL balances. `:amount` per loan stands in for the arithmetic the floor leaves out.
FLOOR = [
    """INSERT INTO journals (id, kind, description, value_date, content_hash, process_id, metadata)
       VALUES (:journal, :kind, 'floor', :d, :hash, 'floor', '{}')""",
    """INSERT INTO postings (journal_id, line, debit_account_id, credit_account_id, amount_minor,
                             currency)
       VALUES (:journal, 1, :receivable, :income, :total, 'USD')""",
    """WITH serviced AS (
           UPDATE loans SET serviced_through = :d,
                  interest_recognized_minor = interest_recognized_minor + :amount,
                  interest_receivable_minor = interest_receivable_minor + :amount
           WHERE state = 'active' AND disbursed_on <= :d
             AND (serviced_through IS NULL OR serviced_through < :d)
           RETURNING id)
       INSERT INTO loan_transactions (loan_id, kind, value_date, amount_minor, interest_minor,
                                      journal_id, workflow_id)
       SELECT id, 'accrual', :d, :amount, :amount, :journal, 'floor' FROM serviced""",
    """UPDATE ledger_accounts SET debits_posted_minor = debits_posted_minor + :total
       WHERE id = :receivable""",
    """UPDATE ledger_accounts SET credits_posted_minor = credits_posted_minor + :total
       WHERE id = :income""",
]


async def measure_floor(engine: AsyncEngine, day: date) -> float:
    """Seconds the floor takes (see the module doc), rolled back and vacuumed afterwards."""
    async with engine.connect() as conn:
        gl = {
            code: int(i)
            for code, i in await conn.execute(
                text("SELECT code, id FROM ledger_accounts WHERE code IN (:r, :i)"),
                {"r": gl_code(INTEREST_RECEIVABLE, "USD"), "i": gl_code(INTEREST_INCOME, "USD")},
            )
        }
        receivable = gl[gl_code(INTEREST_RECEIVABLE, "USD")]
        income = gl[gl_code(INTEREST_INCOME, "USD")]
        await conn.rollback()  # the look-up's autobegun transaction: the floor starts its own
        tx = await conn.begin()
        t = time.perf_counter()
        loans = int(
            await conn.scalar(
                text("SELECT count(*) " + ACTIVE + " AND (serviced_through IS NULL "
                     "OR serviced_through < :d)"),
                {"d": day},
            ) or 0
        )  # fmt: skip
        amount = 1
        params = {
            "d": day,
            "journal": FLOOR_JOURNAL,
            "kind": JOURNAL_KIND,
            "amount": amount,
            "total": amount * loans,
            "receivable": receivable,
            "income": income,
            "hash": content_hash(JOURNAL_KIND, day, [(receivable, income, amount * loans, "USD")]),
        }
        for sql in FLOOR:
            step = time.perf_counter()
            await conn.execute(text(sql), params)
            print(f"  floor step {time.perf_counter() - step:6.2f} s  {' '.join(sql.split()[:3])}")
        elapsed = time.perf_counter() - t
        await tx.rollback()
        await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
            text("VACUUM ANALYZE")
        )
    return elapsed


async def run(
    client: Client, queue: str, day: date, tag: str, **options: int
) -> tuple[float, DailyJobSummary]:
    t = time.perf_counter()
    summary = await client.execute_workflow(
        DailyLoanJobWorkflow.run,
        DailyJobInput(business_date=day, **options),
        id=f"bench-daily-loan-job-{day}-{tag}",
        task_queue=queue,
    )
    return time.perf_counter() - t, summary


def date_totals(summary: DailyJobSummary) -> tuple[object, ...]:
    return summary.business_date, summary.loans, summary.penalty_minor, summary.accrual_minor


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loans", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=DailyJobInput().batch_size)
    parser.add_argument("--concurrency", type=int, default=3)
    parser.add_argument("--catchup-days", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument(
        "--server", default=DEFAULT_URL, help="the Postgres server to make the database on"
    )
    args = parser.parse_args()
    n: int = args.loans
    name = f"bankflow_bench_dl_{uuid.uuid4().hex[:8]}"
    url = create_database(args.server, name)
    upgrade(url)
    settings = Settings(database_url=url, payload_keys=KeyRing.generate_entry("bench"))
    engine = make_engine(settings, pool_size=10, pre_ping=False)  # as worker.py
    sessions = make_sessionmaker(engine)
    env = await WorkflowEnvironment.start_local(
        dev_server_extra_args=ONE_PARTITION,
        data_converter=temporal.data_converter(settings),
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        search_attributes=search_attributes.ALL,
        dev_server_log_level="error",
        ui=False,
    )
    try:
        t = time.perf_counter()
        await seed(sessions, settings, n)
        async with engine.connect() as conn:
            await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
                text("VACUUM ANALYZE")
            )
        print(f"seeded {n:,} active loans in {time.perf_counter() - t:.1f} s")
        floor_s = await measure_floor(engine, DAY)
        print(f"floor: {floor_s:.1f} s (rolled back)")
        queue = f"bench-{uuid.uuid4().hex[:8]}"
        options = {"batch_size": args.batch_size, "concurrency": args.concurrency}
        async with env, AsyncExitStack() as stack:
            await run_workers(stack, env.client, settings, sessions, queue)
            settle_heap()  # as worker.py's main does
            before = await pgstats.snapshot(engine)
            wall_s, summary = await run(env.client, f"{queue}-b", DAY, "first", **options)
            print(await pgstats.report(engine, before))
            print(f"serviced {summary.loans:,} loans for {DAY}: penalties {summary.penalty_minor}, "
                  f"accrued {summary.accrual_minor}")  # fmt: skip
            rerun_s, again = await run(env.client, f"{queue}-b", DAY, "again", **options)
            # The date's totals only: the run's own postings and its ids differ by design.
            if date_totals(again) != date_totals(summary):
                print("MISMATCH: the re-run changed the day's totals", file=sys.stderr)
            if again.run_penalty_minor or again.run_accrual_minor:
                print("MISMATCH: the re-run posted", file=sys.stderr)
            if args.catchup_days:
                later = DAY + timedelta(days=args.catchup_days)
                catchup_s, _ = await run(env.client, f"{queue}-b", later, "catchup", **options)
                print(f"catch-up of {args.catchup_days} days: {catchup_s:.1f} s "
                      f"({n / catchup_s:,.0f} loans/s)")  # fmt: skip
        async with sessions() as s, s.begin():
            report = await verify_ledger(s)
        async with sessions() as s:
            behind = await s.scalar(
                text("SELECT count(*) FROM loans WHERE serviced_through < :d"), {"d": DAY}
            )
        if behind or not report.ok:
            print(f"FAILED: {behind} loans behind, ledger ok={report.ok}", file=sys.stderr)
        print(f"workflow: {wall_s:.1f} s ({n / wall_s:,.0f} loans/s), re-run {rerun_s:.2f} s")
        print(
            f"daily-loan-job loans={n} wall_s={wall_s:.1f} floor_s={floor_s:.1f} "
            f"ratio={wall_s / floor_s:.2f} loans_per_s={n / wall_s:.0f} rerun_s={rerun_s:.2f}"
        )
    finally:
        await engine.dispose()
        if not args.keep:
            drop_database(args.server, name)


if __name__ == "__main__":
    asyncio.run(main())
