"""The daily loan job's plan, loan ranges and closing step, and its Temporal activities.

The batches themselves (`activities.daily_loan_batch`) service the loans; this module counts
the active loans for progress, cuts them into id ranges, and finishes the date: the
portfolio-at-risk snapshot and the day's totals read back from its batch journals.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities import daily_loan_batch
from activities.batch_ranges import id_ranges
from activities.daily_loan_par import write_par_snapshot
from activities.db import without_jit
from activities.errors import transaction
from activities.tables import Currency
from schemas.daily_loan_job import (
    BatchRequest,
    BatchResult,
    DailyJobSummary,
    LoanRange,
    PlanRequest,
    PlanResult,
    RangesRequest,
    RangesResult,
    SnapshotRequest,
)


async def plan_daily_job(session: AsyncSession, req: PlanRequest) -> PlanResult:
    total = await session.scalar(
        text("SELECT count(*) " + daily_loan_batch.ACTIVE), {"d": req.business_date}
    )
    scales = await session.execute(select(Currency.code, Currency.scale))
    return PlanResult(loans_total=int(total or 0), scales={c: int(n) for c, n in scales})


ACTIVE_IDS = "SELECT id FROM loans WHERE state = 'active' AND id > :after ORDER BY id LIMIT :rows"


async def loan_ranges(session: AsyncSession, req: RangesRequest) -> RangesResult:
    """The next `limit` ranges of `batch_size` active loans after `after_loan_id`."""
    found, more = await id_ranges(
        session, ACTIVE_IDS, after=req.after_loan_id, size=req.batch_size, limit=req.limit
    )
    ranges = [LoanRange(first_loan_id=lo, last_loan_id=hi) for lo, hi in found]
    return RangesResult(ranges=ranges, more=more)


# The date's penalties and accruals, all of them and the ones this run's journals carry, from
# the date's batch journals (every daily row of a date is dated that date, whichever run caught
# it up, and a batch journal's lines are the sums of its loans' rows): per currency and the
# receivable each line debits, which tells the kind.
TOTALS = text(
    """
    SELECT p.currency, a.code, sum(p.amount_minor) AS amount,
           sum(p.amount_minor) FILTER (WHERE j.process_id = :wf AND j.metadata->>'run' = :run)
               AS run_amount
    FROM journals j JOIN postings p ON p.journal_id = j.id
    JOIN ledger_accounts a ON a.id = p.debit_account_id
    WHERE j.kind = :kind AND j.value_date = :d
    GROUP BY p.currency, a.code
    """
)
# kind of a daily row <- the GL account its journal line debits.
RECEIVABLE_OF = {debit.number: kind for kind, (debit, _) in daily_loan_batch.PAIRS.items()}


async def finish_daily_job(session: AsyncSession, req: SnapshotRequest) -> DailyJobSummary:
    """Write the date's PAR snapshot and sum what was posted for the date, and by this run, from
    the ledger itself (not from counters a retried batch could have missed)."""
    await without_jit(session)  # the snapshot's plan crosses jit_above_cost; compiling cost 0.5 s
    par_rows = await write_par_snapshot(session, req.business_date)
    totals: dict[str, dict[str, int]] = {"penalty": {}, "accrual": {}}
    this_run: dict[str, dict[str, int]] = {"penalty": {}, "accrual": {}}
    params = {"d": req.business_date, "wf": req.workflow_id, "run": req.run_id,
              "kind": daily_loan_batch.JOURNAL_KIND}  # fmt: skip
    for r in await session.execute(TOTALS, params):
        kind = RECEIVABLE_OF[r.code.removesuffix(f"-{r.currency}")]  # see gl_code
        totals[kind][r.currency] = int(r.amount)
        if r.run_amount:
            this_run[kind][r.currency] = int(r.run_amount)
    loans = await session.scalar(
        text("SELECT count(*) " + daily_loan_batch.ACTIVE), {"d": req.business_date}
    )
    scales = await session.execute(select(Currency.code, Currency.scale))
    return DailyJobSummary(
        business_date=req.business_date,
        loans=int(loans or 0),
        penalty_minor=totals["penalty"],
        accrual_minor=totals["accrual"],
        run_penalty_minor=this_run["penalty"],
        run_accrual_minor=this_run["accrual"],
        par_rows=par_rows,
        scales={c: int(n) for c, n in scales},
    )


class DailyLoanJobActivities:
    """Temporal entry points; each is one transaction (`in_transaction` retries deadlocks)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @activity.defn(name="plan_daily_loan_job")
    async def plan(self, req: PlanRequest) -> PlanResult:
        return await transaction(self.sessions, lambda s: plan_daily_job(s, req))

    @activity.defn(name="daily_loan_ranges")
    async def ranges(self, req: RangesRequest) -> RangesResult:
        return await transaction(self.sessions, lambda s: loan_ranges(s, req))

    @activity.defn(name="service_loan_batch")
    async def service_batch(self, req: BatchRequest) -> BatchResult:
        """Heartbeats between its phases: a worker that dies mid-batch is noticed within the
        heartbeat timeout, and the batch runs again elsewhere (it rolled back, or it is done)."""
        activity.heartbeat("start")
        return await transaction(
            self.sessions, lambda s: daily_loan_batch.service_batch(s, req, activity.heartbeat)
        )

    @activity.defn(name="finish_daily_loan_job")
    async def finish(self, req: SnapshotRequest) -> DailyJobSummary:
        return await transaction(self.sessions, lambda s: finish_daily_job(s, req))

    def all(self) -> list[Callable[..., Awaitable[object]]]:
        return [self.plan, self.ranges, self.service_batch, self.finish]
