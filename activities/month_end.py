"""Month-end savings interest: the activities MonthEndInterest calls, and the run around the
batches: claiming the period's run row, cutting the accounts into ranges, storing the summary
from `interest_postings` itself. The batches are in `activities.month_end_batch`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.batch_ranges import id_ranges
from activities.errors import transaction
from activities.month_end_batch import ELIGIBLE, post_interest_batch
from activities.tables import Currency, MonthEndRun
from domain.money import to_major
from domain.periods import period_bounds
from schemas.errors import BankflowError, ErrorCode
from schemas.month_end import (
    AccountRange,
    BatchRequest,
    BatchResult,
    CurrencyTotals,
    FinishRequest,
    MonthEndSummary,
    PlanRequest,
    PlanResult,
    RangesRequest,
    RangesResult,
)


async def plan_month_end(session: AsyncSession, req: PlanRequest) -> PlanResult:
    """Claim the period's run row, or report that the period is already completed."""
    start, end = period_bounds(req.period)
    run = await session.get(MonthEndRun, req.period, with_for_update=True)
    if run is not None and run.status == "completed":
        return PlanResult(accounts_total=run.accounts, completed=await summary(session, req.period))
    if run is None:
        session.add(
            MonthEndRun(
                period=req.period,
                status="running",
                workflow_id=req.workflow_id,
                started_at=req.started_at,
            )
        )
    else:
        run.workflow_id = req.workflow_id
    total = await session.scalar(text("SELECT count(*)" + ELIGIBLE), {"start": start, "end": end})
    scales = await session.execute(select(Currency.code, Currency.scale))
    return PlanResult(accounts_total=int(total or 0), scales={c: int(n) for c, n in scales})


SAVINGS_IDS = (
    "SELECT account_id AS id FROM savings_accounts WHERE account_id > :after"
    " ORDER BY account_id LIMIT :rows"
)


async def account_ranges(session: AsyncSession, req: RangesRequest) -> RangesResult:
    """The next `limit` ranges of `batch_size` savings accounts after `after_account_id`."""
    found, more = await id_ranges(
        session, SAVINGS_IDS, after=req.after_account_id, size=req.batch_size, limit=req.limit
    )
    ranges = [AccountRange(first_account_id=lo, last_account_id=hi) for lo, hi in found]
    return RangesResult(ranges=ranges, more=more)


TOTALS = text(
    """
    SELECT currency, count(*) AS accounts, sum(posted_minor) AS interest, sum(tax_minor) AS tax
    FROM interest_postings WHERE period = :period GROUP BY currency ORDER BY currency
    """
)
# What one run's journals posted (an account earning nothing has no journal: not counted). The
# period's rows are summed per journal first, in one pass: joined row by row, the planner (with
# the statistics of a table a run has just filled) scanned every row of the period once per
# journal of the run, 200 times at a million accounts, which was half of month-end's wall time.
RUN_TOTALS = text(
    """
    WITH per_journal AS MATERIALIZED (
        SELECT journal_id, currency, count(*) AS accounts, sum(posted_minor) AS interest,
               sum(tax_minor) AS tax
        FROM interest_postings
        WHERE period = :period AND journal_id IS NOT NULL
        GROUP BY journal_id, currency
    )
    SELECT p.currency, sum(p.accounts) AS accounts, sum(p.interest) AS interest,
           sum(p.tax) AS tax
    FROM per_journal p JOIN journals j ON j.id = p.journal_id
    WHERE j.process_id = :wf AND j.metadata->>'run' = :run
    GROUP BY p.currency ORDER BY p.currency
    """
)


async def finish_month_end(session: AsyncSession, req: FinishRequest) -> MonthEndSummary:
    """Store the summary from `interest_postings` itself (not from counters a crash could have
    lost) and mark the period completed."""
    totals = [
        {"currency": r.currency, "accounts": r.accounts, "interest_minor": int(r.interest),
         "tax_minor": int(r.tax)}
        for r in await session.execute(TOTALS, {"period": req.period})
    ]  # fmt: skip
    now = datetime.now(UTC)
    run = await session.get(MonthEndRun, req.period, with_for_update=True)
    if run is None:
        raise BankflowError(ErrorCode.NOT_FOUND, f"month-end {req.period} was never planned")
    if run.status != "completed":
        run.status = "completed"
        run.workflow_id = req.workflow_id
        run.accounts = sum(t["accounts"] for t in totals)
        run.totals = totals
        run.started_at = req.started_at
        run.finished_at = now
        run.duration_s = Decimal(str(round((now - req.started_at).total_seconds(), 3)))
        await session.flush()
    scales = {c: int(n) for c, n in await session.execute(select(Currency.code, Currency.scale))}
    params = {"period": req.period, "wf": req.workflow_id, "run": req.run_id}
    this_run = [
        _currency_totals(
            {"currency": r.currency, "accounts": r.accounts, "interest_minor": r.interest,
             "tax_minor": r.tax},
            scales[r.currency],
        )
        for r in await session.execute(RUN_TOTALS, params)
    ]  # fmt: skip
    return (await summary(session, req.period)).model_copy(update={"this_run": this_run})


async def summary(session: AsyncSession, period: str) -> MonthEndSummary:
    run = await session.get(MonthEndRun, period)
    if run is None:
        raise BankflowError(ErrorCode.NOT_FOUND, f"no month-end run for {period}")
    scales = {c: int(n) for c, n in await session.execute(select(Currency.code, Currency.scale))}
    return MonthEndSummary(
        period=run.period,
        status=run.status,
        workflow_id=run.workflow_id,
        value_date=period_bounds(period)[1],
        accounts=run.accounts,
        totals=[_currency_totals(t, scales[t["currency"]]) for t in run.totals],
        started_at=run.started_at,
        finished_at=run.finished_at,
        duration_s=float(run.duration_s) if run.duration_s is not None else None,
    )


def _currency_totals(t: dict[str, Any], scale: int) -> CurrencyTotals:
    interest, tax = int(t["interest_minor"]), int(t["tax_minor"])
    return CurrencyTotals(
        currency=t["currency"],
        accounts=int(t["accounts"]),
        interest=to_major(interest, scale),
        tax=to_major(tax, scale),
        net=to_major(interest - tax, scale),
        interest_minor=interest,
        tax_minor=tax,
    )


class MonthEndActivities:
    """Temporal entry points; each is one transaction (`in_transaction` retries deadlocks)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @activity.defn(name="plan_month_end")
    async def plan(self, req: PlanRequest) -> PlanResult:
        return await transaction(self.sessions, lambda s: plan_month_end(s, req))

    @activity.defn(name="month_end_ranges")
    async def ranges(self, req: RangesRequest) -> RangesResult:
        return await transaction(self.sessions, lambda s: account_ranges(s, req))

    @activity.defn(name="post_interest_batch")
    async def post_batch(self, req: BatchRequest) -> BatchResult:
        """Heartbeats between its phases: a worker that dies mid-batch is noticed within the
        heartbeat timeout, and the batch runs again elsewhere (it rolled back, or it is done)."""
        activity.heartbeat("start")
        return await transaction(
            self.sessions, lambda s: post_interest_batch(s, req, activity.heartbeat)
        )

    @activity.defn(name="finish_month_end")
    async def finish(self, req: FinishRequest) -> MonthEndSummary:
        return await transaction(self.sessions, lambda s: finish_month_end(s, req))

    def all(self) -> list[Callable[..., Awaitable[object]]]:
        return [self.plan, self.ranges, self.post_batch, self.finish]
