"""Month-end savings interest at scale, measured against a hand-written SQL floor in one run.

    .venv/bin/python bench/month_end.py [--accounts 1000000] [--batch-size 5000] [--concurrency 3]
        [--server postgresql+psycopg://postgres@127.0.0.1:5432/bankflow]

On a throwaway database it seeds N savings accounts on one product (3.65 %, daily balance,
monthly compounding and posting, 10.00 minimum, 15 % withholding tax) with a month of activity
(an opening balance, one deposit or withdrawal in the month, some accounts opened mid-month),
then measures:
  floor_s: the minimal physical work, into the real tables: one posting row per account (its
           net interest) and one per batch (the tax withheld), one journal per batch with its
           content hash, one balance update per account and per GL account, set-based SQL in
           one transaction, nothing read or priced, no Temporal, no Python per account; then
           rolled back (and vacuumed) so the workflow starts from the same data. The amounts
           come from the interest priced in SQL beforehand (not timed): the totals the
           workflow must equal;
  wall_s:  the MonthEndInterest workflow on a local Temporal dev server with the real workers,
           from start to result;
  rerun_s: the same period started again (it must post nothing).
It checks that the workflow posted exactly one interest row per account and the same totals as
the floor. Figures depend on the machine and on whatever else runs on it; compare the ratio.
The last line reads
`month-end accounts=N wall_s=X floor_s=Y ratio=Z rerun_s=W worker_peak_rss_mb=M`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

_root = str(Path(__file__).resolve().parent.parent)
if _root not in sys.path:
    sys.path.insert(0, _root)

from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from activities.db import in_transaction, make_engine, make_sessionmaker  # noqa: E402
from activities.ledger.chart import (  # noqa: E402
    INTEREST_EXPENSE,
    WITHHOLDING_TAX,
    ensure_branch,
    ensure_chart,
)
from activities.ledger.verify import verify_ledger  # noqa: E402
from activities.migrate import upgrade  # noqa: E402
from activities.savings import create_product  # noqa: E402
from activities.seed.synthetic import seed_synthetic_accounts  # noqa: E402
from bench import pgstats  # noqa: E402
from bench.kit import run_workers  # noqa: E402
from domain.periods import previous_period  # noqa: E402
from schemas import search_attributes, temporal  # noqa: E402
from schemas.keyring import KeyRing  # noqa: E402
from schemas.month_end import MonthEndInput  # noqa: E402
from schemas.savings import ProductCreate  # noqa: E402
from schemas.settings import Settings  # noqa: E402
from scripts.local_postgres import DEFAULT_URL, create_database, drop_database  # noqa: E402
from scripts.temporal_dev import ONE_PARTITION  # noqa: E402
from workflows.month_end_interest import MonthEndInterestWorkflow  # noqa: E402

PRODUCT = ProductCreate(
    code="BENCH",
    name="Bench savings",
    currency="USD",
    annual_rate=Decimal("0.0365"),
    min_balance="10.00",
    withholding_tax_rate=Decimal("0.15"),
)
SEED_CHUNK = 50_000


def half_even(x: str, places: int) -> str:
    """SQL: round a non-negative numeric half-to-even (Postgres' round() is half-up)."""
    s = f"({x}) * 1e{places}"
    return (
        f"(CASE WHEN {s} - trunc({s}) = 0.5 AND mod(trunc({s}), 2) = 0 "
        f"THEN trunc({s}) ELSE round({s}) END / 1e{places})"
    )


# The expected interest for the bench product's rules (daily balance, monthly compounding and
# posting, first period so nothing carried), priced in SQL: the totals the workflow must equal.
# Not timed: it is the check, not the floor.
PRICING = [
    """CREATE TEMP TABLE f_acc ON COMMIT DROP AS
       SELECT s.account_id, s.opened_on, a.credits_posted_minor - a.debits_posted_minor AS bal
       FROM savings_accounts s JOIN ledger_accounts a ON a.id = s.account_id
       WHERE s.opened_on <= :end""",
    """CREATE TEMP TABLE f_chg ON COMMIT DROP AS
       SELECT x.account_id, j.value_date AS d, sum(x.amount) AS amt
       FROM (SELECT credit_account_id AS account_id, journal_id, amount_minor AS amount
             FROM postings
             UNION ALL SELECT debit_account_id, journal_id, -amount_minor FROM postings) x
       JOIN journals j ON j.id = x.journal_id
       JOIN f_acc USING (account_id)
       WHERE j.value_date >= :start GROUP BY 1, 2""",
    "CREATE INDEX ON f_chg (account_id, d)",
    "ANALYZE f_acc",
    "ANALYZE f_chg",
    f"""CREATE TEMP TABLE f_int ON COMMIT DROP AS
       WITH starts AS (
           SELECT account_id, greatest(CAST(:start AS date), opened_on) AS s FROM f_acc
           UNION SELECT c.account_id, c.d FROM f_chg c JOIN f_acc a USING (account_id)
           WHERE c.d > :start AND c.d <= :end AND c.d >= a.opened_on),
       segs AS (
           SELECT account_id, s,
                  coalesce(lead(s) OVER (PARTITION BY account_id ORDER BY s),
                           CAST(:end AS date) + 1) - s AS days
           FROM starts),
       eod AS (
           SELECT g.account_id, g.days,
                  (a.bal - coalesce((SELECT sum(amt) FROM f_chg c
                                     WHERE c.account_id = g.account_id AND c.d > g.s), 0))
                  / 100.0 AS b
           FROM segs g JOIN f_acc a USING (account_id)),
       earned AS (
           SELECT account_id,
                  sum(CASE WHEN b >= 10 AND b > 0
                      THEN days * {half_even("b * 0.0365 / 365", 9)} ELSE 0 END) AS e
           FROM eod GROUP BY account_id)
       SELECT account_id, CAST({half_even("e", 2)} * 100 AS bigint) AS gross,
              CAST({half_even(half_even("e", 2) + " * 0.15", 2)} * 100 AS bigint) AS tax,
              (row_number() OVER (ORDER BY account_id) - 1) / :batch AS batch
       FROM earned""",
    """CREATE TEMP TABLE f_lines ON COMMIT DROP AS
       SELECT batch, row_number() OVER (PARTITION BY batch ORDER BY kind, account_id) AS line,
              debit, credit, amount
       FROM (SELECT batch, account_id, 0 AS kind, :expense AS debit, account_id AS credit,
                    gross - tax AS amount FROM f_int WHERE gross - tax > 0
             UNION ALL
             SELECT batch, 0, 1, :expense, :wht, sum(tax) FROM f_int GROUP BY batch
             HAVING sum(tax) > 0) l""",
    "ANALYZE f_lines",
]
# The floor: the minimal physical work of a month-end, into the real tables (their constraints,
# indexes, foreign keys and triggers): one posting row per account (its net interest) and one
# per batch (the tax), one journal per batch with its content hash, one balance update per
# account and one per GL account, set-based, in one transaction, nothing priced or read.
FLOOR = [
    """INSERT INTO journals (id, kind, description, value_date, content_hash)
       SELECT 'floor-' || batch, 'interest', 'floor', :end,
              encode(sha256(convert_to(
                  '{"kind":"interest","value_date":"' || :end_iso ||
                  '","reverses"\\:null,"postings":[' ||
                  string_agg('[' || debit || ',' || credit || ',' || amount || ',"USD"]', ','
                             ORDER BY line) || ']}', 'UTF8')), 'hex')
       FROM f_lines GROUP BY batch""",
    """INSERT INTO postings (journal_id, line, debit_account_id, credit_account_id,
                             amount_minor, currency)
       SELECT 'floor-' || batch, line, debit, credit, amount, 'USD' FROM f_lines""",
    """UPDATE ledger_accounts a SET credits_posted_minor = credits_posted_minor + f.gross - f.tax
       FROM f_int f WHERE a.id = f.account_id AND f.gross - f.tax > 0""",
    """UPDATE ledger_accounts SET debits_posted_minor = debits_posted_minor
                                  + (SELECT sum(gross) FROM f_int) WHERE id = :expense""",
    """UPDATE ledger_accounts SET credits_posted_minor = credits_posted_minor
                                  + (SELECT sum(tax) FROM f_int) WHERE id = :wht""",
]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument(
        "--server", default=DEFAULT_URL, help="the Postgres server to make the database on"
    )
    args = parser.parse_args()
    n: int = args.accounts

    server = args.server
    name = f"bankflow_bench_me_{uuid.uuid4().hex[:8]}"
    url = create_database(server, name)
    upgrade(url)
    settings = Settings(database_url=url, payload_keys=KeyRing.generate_entry("bench"))
    engine = make_engine(settings, pool_size=10, pre_ping=False)  # as worker.py
    sessions = make_sessionmaker(engine)
    today = date.today()
    period = previous_period(f"{today:%Y-%m}")
    start = date(int(period[:4]), int(period[5:]), 1)
    end = today.replace(day=1) - timedelta(days=1)
    try:

        async def setup(session: AsyncSession) -> dict[str, int]:
            await ensure_branch(session, "HQ", "Head office", "UTC")
            chart = await ensure_chart(session, "USD")
            await create_product(session, PRODUCT)
            return chart

        chart = await in_transaction(sessions, setup)
        t = time.perf_counter()
        for i in range(0, n, SEED_CHUNK):
            count = min(SEED_CHUNK, n - i)

            async def chunk(session: AsyncSession, i: int = i, count: int = count) -> object:
                return await seed_synthetic_accounts(
                    session, tag=f"B{i // SEED_CHUNK}-", count=count, product_code="BENCH",
                    period_start=start,
                )  # fmt: skip

            await in_transaction(sessions, chunk)
            print(f"seeded {i + count:,} accounts", end="\r", flush=True)
        async with engine.connect() as conn:
            await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
                text("VACUUM ANALYZE")
            )
        print(f"seeded {n:,} accounts with a month of activity in {time.perf_counter() - t:.1f} s")

        floor_s, floor_totals = await measure_floor(engine, chart, start, end, args.batch_size)
        print(f"floor: {floor_s:.1f} s (rolled back), interest/tax {floor_totals}")

        before = await pgstats.snapshot(engine)
        wall_s, rerun_s, totals, peak_mb = await measure_workflow(
            settings, sessions, period, args.batch_size, args.concurrency
        )
        print(await pgstats.report(engine, before))
        async with sessions() as s:
            rows = await s.scalar(
                text("SELECT count(*) FROM interest_postings WHERE period = :p"), {"p": period}
            )
            eligible = await s.scalar(
                text("SELECT count(*) FROM savings_accounts WHERE opened_on <= :e"), {"e": end}
            )
        async with sessions() as s, s.begin():
            report = await verify_ledger(s)
        print(f"interest rows {rows:,} for {eligible:,} eligible accounts; totals {totals}; "
              f"ledger {'verified' if report.ok else 'NOT VERIFIED'}")  # fmt: skip
        if not report.ok:
            print("FAILED: ledger verify", file=sys.stderr)
        if rows != eligible or totals != floor_totals:
            print("MISMATCH: the workflow and the floor disagree", file=sys.stderr)
        print(f"workflow: {wall_s:.1f} s ({n / wall_s:,.0f} accounts/s), re-run {rerun_s:.2f} s")
        print(
            f"month-end accounts={n} wall_s={wall_s:.1f} floor_s={floor_s:.1f} "
            f"ratio={wall_s / floor_s:.2f} rerun_s={rerun_s:.2f} worker_peak_rss_mb={peak_mb:.0f}"
        )
    finally:
        await engine.dispose()
        if not args.keep:
            drop_database(server, name)


async def measure_floor(
    engine: AsyncEngine, chart: dict[str, int], start: date, end: date, batch: int
) -> tuple[float, tuple[int, int]]:
    params = {
        "start": start,
        "end": end,
        "end_iso": end.isoformat(),
        "batch": batch,
        "expense": chart[INTEREST_EXPENSE.number],
        "wht": chart[WITHHOLDING_TAX.number],
    }
    async with engine.connect() as conn:
        tx = await conn.begin()
        t = time.perf_counter()
        for sql in PRICING:
            await conn.execute(text(sql), params)
        print(f"  expected interest priced in SQL in {time.perf_counter() - t:.1f} s (not timed)")
        t = time.perf_counter()
        for sql in FLOOR:
            step = time.perf_counter()
            await conn.execute(text(sql), params)
            print(f"  floor step {time.perf_counter() - step:6.2f} s  {' '.join(sql.split()[:3])}")
        elapsed = time.perf_counter() - t
        row = (await conn.execute(text("SELECT sum(gross), sum(tax) FROM f_int"))).one()
        await tx.rollback()
        await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
            text("VACUUM ANALYZE")
        )
    return elapsed, (int(row[0]), int(row[1]))


async def measure_workflow(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    period: str,
    batch: int,
    concurrency: int,
) -> tuple[float, float, tuple[int, int], float]:
    env = await WorkflowEnvironment.start_local(
        dev_server_extra_args=ONE_PARTITION,
        data_converter=temporal.data_converter(settings),
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        search_attributes=search_attributes.ALL,
        dev_server_log_level="error",
        ui=False,
    )
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    async with env, AsyncExitStack() as stack:
        await run_workers(stack, env.client, settings, sessions, queue)
        inp = MonthEndInput(period=period, batch_size=batch, concurrency=concurrency)
        times = []
        summary = None
        rss = PeakRss()
        for attempt in range(2):
            t = time.perf_counter()
            async with rss.sampling():
                summary = await env.client.execute_workflow(
                    MonthEndInterestWorkflow.run,
                    inp,
                    id=f"month-end-{period}-{attempt}",
                    task_queue=f"{queue}-b",
                )
            times.append(time.perf_counter() - t)
        assert summary is not None
        [usd] = summary.totals
        print(
            f"worker RSS {rss.start_mb:.0f} MB when the workflow started, {rss.peak_mb:.0f} MB at peak"
        )
        return times[0], times[1], (usd.interest_minor, usd.tax_minor), rss.peak_mb


class PeakRss:
    """The worker's resident memory at its highest while the workflow runs (the workers run in
    this process), sampled every 50 ms from /proc, and what it was when the first run began
    (the seeding's allocations stay resident in this process: the growth is the workflow's)."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self.start_mb: float | None = None

    def now_mb(self) -> float:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20

    @asynccontextmanager
    async def sampling(self) -> AsyncIterator[None]:
        async def sample() -> None:
            while True:
                self.peak_mb = max(self.peak_mb, self.now_mb())
                await asyncio.sleep(0.05)

        if self.start_mb is None:
            self.start_mb = self.now_mb()
        task = asyncio.create_task(sample())
        try:
            yield
        finally:
            task.cancel()
            self.peak_mb = max(self.peak_mb, self.now_mb())


if __name__ == "__main__":
    asyncio.run(main())
