"""The daily loan job at scale: loans serviced per second for one business date, in one run.

    .venv/bin/python bench/daily_loan_job.py [--loans 20000] [--batch-size 2000] [--concurrency 3]

On a throwaway database it makes three template loans through the real code path (an accrual
loan months in arrears, an accrual loan not yet due, a cash loan in arrears), copies them with
set-based SQL to N loans in all (with their disbursement journals), marks every loan serviced
through the day before D (as a daily cadence leaves them), then measures:
  wall_s:  the DailyLoanJob workflow for D on a local Temporal dev server with the real workers,
           from start to result (arrears, penalties, accrual, journals, PAR snapshot);
  rerun_s: the same date started again (it must post nothing);
  catchup_s: (with --catchup-days K) a run for D+K servicing K days per loan at once.
It checks that every loan is serviced through D and that the ledger verifies. Figures depend on
the machine and on whatever else runs on it. The last line reads
`daily-loan-job loans=N wall_s=X loans_per_s=Y rerun_s=Z`.
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
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from activities.db import in_transaction, make_engine, make_sessionmaker  # noqa: E402
from activities.ledger.chart import ensure_branch, ensure_chart  # noqa: E402
from activities.ledger.verify import verify_ledger  # noqa: E402
from activities.migrate import upgrade  # noqa: E402
from schemas import search_attributes, temporal  # noqa: E402
from schemas.daily_loan_job import DailyJobInput, DailyJobSummary  # noqa: E402
from schemas.keyring import KeyRing  # noqa: E402
from schemas.settings import Settings  # noqa: E402
from scripts.local_postgres import DEFAULT_URL, create_database, drop_database  # noqa: E402
from tests.conftest import Factory  # noqa: E402
from tests.daily_loan_job.seed import clone_loans  # noqa: E402
from tests.loans.book import disburse  # noqa: E402
from tests.loans.conftest import LoanKit  # noqa: E402
from worker import build_workers  # noqa: E402
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


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loans", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=3)
    parser.add_argument("--catchup-days", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()
    n: int = args.loans
    name = f"bankflow_bench_dl_{uuid.uuid4().hex[:8]}"
    url = create_database(DEFAULT_URL, name)
    upgrade(url)
    settings = Settings(database_url=url, payload_keys=KeyRing.generate_entry("bench"))
    engine = make_engine(settings, pool_size=10)
    sessions = make_sessionmaker(engine)
    env = await WorkflowEnvironment.start_local(
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
        queue = f"bench-{uuid.uuid4().hex[:8]}"
        options = {"batch_size": args.batch_size, "concurrency": args.concurrency}
        async with env, AsyncExitStack() as stack:
            for w in build_workers(
                env.client, settings, sessions, interactive_queue=queue, batch_queue=f"{queue}-b"
            ):
                await stack.enter_async_context(w)
            wall_s, summary = await run(env.client, f"{queue}-b", DAY, "first", **options)
            print(f"serviced {summary.loans:,} loans for {DAY}: penalties {summary.penalty_minor}, "
                  f"accrued {summary.accrual_minor}")  # fmt: skip
            rerun_s, again = await run(env.client, f"{queue}-b", DAY, "again", **options)
            if again != summary:
                print("MISMATCH: the re-run changed the day's totals", file=sys.stderr)
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
            f"daily-loan-job loans={n} wall_s={wall_s:.1f} loans_per_s={n / wall_s:.0f} "
            f"rerun_s={rerun_s:.2f}"
        )
    finally:
        await engine.dispose()
        if not args.keep:
            drop_database(DEFAULT_URL, name)


if __name__ == "__main__":
    asyncio.run(main())
